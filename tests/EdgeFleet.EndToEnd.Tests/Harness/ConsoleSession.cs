using System.Net;
using System.Text.RegularExpressions;

namespace EdgeFleet.EndToEnd.Tests.Harness;

/// <summary>HTTP clients for the web console: no redirects followed, a cookie jar, and forms that carry the antiforgery token.</summary>
public static partial class ConsoleSession
{
    public static HttpClient Client(Fleet fleet) => new(new HttpClientHandler { AllowAutoRedirect = false, CookieContainer = new CookieContainer() }) { BaseAddress = new Uri(fleet.Url) };

    public static async Task<HttpResponseMessage> LogInAsync(HttpClient client, string user, string password)
    {
        var page = await client.GetStringAsync("/console/login");
        return await client.PostAsync("/console/login", Form(page, ("username", user), ("password", password)));
    }

    /// <summary>A logged-in client (the login must succeed).</summary>
    public static async Task<HttpClient> StartAsync(Fleet fleet, string user, string password)
    {
        var client = Client(fleet);
        using var response = await LogInAsync(client, user, password);
        Assert.Equal(HttpStatusCode.Redirect, response.StatusCode);
        return client;
    }

    /// <summary>A form post carrying the antiforgery token found in <paramref name="page"/>.</summary>
    public static FormUrlEncodedContent Form(string page, params (string Name, string Value)[] fields) =>
        new([.. fields.Select(f => new KeyValuePair<string, string>(f.Name, f.Value)),
            new("__RequestVerificationToken", TokenPattern().Match(page).Groups[1].Value)]);

    [GeneratedRegex("name=\"__RequestVerificationToken\" type=\"hidden\" value=\"([^\"]+)\"")]
    private static partial Regex TokenPattern();
}
