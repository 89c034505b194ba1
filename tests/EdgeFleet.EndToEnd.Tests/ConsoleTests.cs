using System.Net;
using System.Text.Json.Nodes;
using EdgeFleet.Cli.Sim;
using EdgeFleet.EndToEnd.Tests.Harness;
using EdgeFleet.Shared.Wire;
using OpenQA.Selenium;
using OpenQA.Selenium.Chrome;

namespace EdgeFleet.EndToEnd.Tests;

/// <summary>
/// The web console in a real headless Chromium (Debian's chromium and chromedriver, driven by Selenium), against a
/// fleet process with simulated devices: log in, live counts, a device, a rollout created with the form's preview,
/// its progress moving, pause; what a viewer may not do, refused by the server too; CSRF and anonymous requests
/// refused; lockout. Screenshots of the main pages go to artifacts/console-screenshots.
/// </summary>
public sealed class ConsoleTests : IDisposable
{
    private const string AdminPassword = "admin password 1";
    private const string ViewerPassword = "viewer password 1";
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(60);
    private readonly string _dir = Directory.CreateTempSubdirectory("edgefleet-console-").FullName;
    private readonly string _shots = Path.Combine(Repo.Root, "artifacts", "console-screenshots");
    private readonly Fleet _fleet;
    private ChromeDriver? _browser;

    public ConsoleTests()
    {
        Cli(null, "keys", "init", "--dir", P("keys"));
        _fleet = new Fleet(P("fleet"), extraArgs: ["--Fleet:Signing:KeyDirectory", P("keys"), "--Fleet:RolloutTickSeconds", "0.25"]);
        try
        {
            Cli(null, "model", "demo", "--out", P("v2.onnx"), "--seed", "43");
            Cli(null, "model", "samples", "--kind", "demo", "--count", "20", "--out", P("samples"));
            File.WriteAllText(P("card.json"), """{"owner": "vibration-ml", "intendedUse": "pump vibration", "labels": ["normal", "imbalance", "bearing-wear"]}""");
            Cli(_fleet, "model", "register", "--id", "vibration-classifier");
            Cli(null, "model", "validate", "--reference", P("v2.onnx"), "--candidate", P("v2.onnx"), "--data", P("samples"), "--max-latency-ratio", "100", "--report-out", P("report.json"));
            Cli(_fleet, "model", "push", "--model-id", "vibration-classifier", "--card", P("card.json"), "--fp32", P("v2.onnx"), "--report", P("report.json"));
            Cli(_fleet, "model", "approve", "--model-id", "vibration-classifier", "--model-version", "1", "--reason", "validated");
            // The first admin comes from the CLI with the bootstrap key, the password on standard input.
            CliWithInput(_fleet, AdminPassword, "users", "create", "--username", "ada", "--role", "admin");
            CliWithInput(_fleet, ViewerPassword, "users", "create", "--username", "vic", "--role", "viewer");
            Directory.CreateDirectory(_shots);
        }
        catch
        {
            _fleet.Dispose(); // xunit does not dispose a test class whose constructor threw
            throw;
        }
    }

    private string P(string name) => Path.Combine(_dir, name);

    private static string Cli(Fleet? fleet, params string[] args) => CliWithInput(fleet, null, args);

    private static string CliWithInput(Fleet? fleet, string? stdin, params string[] args) => FleetCli.Run(0, fleet, stdin, args);

    private ChromeDriver Browser()
    {
        if (_browser is not null)
            return _browser;
        var options = new ChromeOptions { BinaryLocation = File.Exists("/usr/lib/chromium/chromium") ? "/usr/lib/chromium/chromium" : "/usr/bin/chromium" };
        options.AddArguments("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1400,1000", "--no-first-run");
        var service = ChromeDriverService.CreateDefaultService("/usr/bin", "chromedriver");
        service.SuppressInitialDiagnosticInformation = true;
        service.HideCommandPromptWindow = true;
        _browser = new ChromeDriver(service, options, TimeSpan.FromSeconds(60));
        _browser.Manage().Timeouts().PageLoad = TimeSpan.FromSeconds(30);
        // A click that submits a form returns before the next page is there: finding an element waits for it.
        _browser.Manage().Timeouts().ImplicitWait = TimeSpan.FromSeconds(15);
        return _browser;
    }

    private void Go(string path) => Browser().Navigate().GoToUrl(_fleet.Url + path);

    private IWebElement Find(string css) => Browser().FindElement(By.CssSelector(css));

    private void LogIn(string user, string password)
    {
        Go("/console/login");
        Find("#username").SendKeys(user);
        Find("#password").SendKeys(password);
        Find("#login").Click();
    }

    /// <summary>Whether the page, once loaded, has no element matching <paramref name="css"/> (without waiting for one).</summary>
    private bool Absent(string css)
    {
        Find("main"); // the page is there
        var timeouts = Browser().Manage().Timeouts();
        timeouts.ImplicitWait = TimeSpan.Zero;
        try
        {
            return Browser().FindElements(By.CssSelector(css)).Count == 0;
        }
        finally
        {
            timeouts.ImplicitWait = TimeSpan.FromSeconds(15);
        }
    }

    private void Shot(string name) => Browser().GetScreenshot().SaveAsFile(Path.Combine(_shots, name + ".png"));

    /// <summary>Waits for a condition; one that reads an element of a page being replaced (stale, not there yet) is not met yet.</summary>
    private async Task Until(Func<bool> condition, Func<string> what)
    {
        bool Holds()
        {
            try
            {
                return condition();
            }
            catch (Exception e) when (e is StaleElementReferenceException or NoSuchElementException)
            {
                return false;
            }
        }
        var deadline = DateTime.UtcNow + Patience;
        while (!Holds())
        {
            Assert.True(DateTime.UtcNow < deadline, what());
            await Task.Delay(200);
        }
    }

    private async Task<SimulatedFleet> DevicesAsync(int count)
    {
        using var api = _fleet.AdminClient();
        var sim = await SimulatedFleet.EnrollAsync(api, new SimOptions
        {
            Devices = count,
            Rate = 0,
            BatchRecords = 10,
            Prefix = "c",
            SharedKeepAlive = true,
            InitialModel = new ModelRef { Name = "vibration-classifier", Version = "0" },
        }, CancellationToken.None);
        await sim.ConnectAsync(CancellationToken.None);
        return sim;
    }

    [Fact]
    public async Task An_operator_watches_the_fleet_creates_a_rollout_with_a_preview_and_pauses_it()
    {
        LogIn("ada", AdminPassword);
        await Until(() => Browser().Url.EndsWith("/console", StringComparison.Ordinal), () => Browser().Url);
        Assert.Equal("0", Find("#online").Text);

        // Devices come online while the overview is open: the counts change without a reload.
        await using var sim = await DevicesAsync(60);
        await Until(() => Find("#online").Text == "60", () => $"online count stayed {Find("#online").Text}");
        Shot("overview");

        Go("/console/devices?sort=-id");
        Assert.Contains("60 devices match; page 1 of 2", Find("#matching").Text, StringComparison.Ordinal);
        Assert.Equal(51, Browser().FindElements(By.CssSelector("#devices tr")).Count); // 50 rows and the header: paged on the server
        Find("#next").Click();
        await Until(() => Find("#matching").Text.Contains("page 2 of 2", StringComparison.Ordinal), () => Find("#matching").Text);
        Assert.Equal(11, Browser().FindElements(By.CssSelector("#devices tr")).Count);
        var first = Find("#devices a[href^='/console/devices/']");
        var id = first.Text;
        first.Click();
        Assert.Equal(id, Find("#device-id").Text);
        Shot("device");

        // The form previews which devices each phase moves, then creates the rollout with the same order.
        Go("/console/rollouts/new");
        Find("#selector").SendKeys("simulated=true");
        var phases = Find("#phases");
        phases.Clear();
        phases.SendKeys("25%:1:5,50%:3600,100%");
        Find("#preview").Click();
        Assert.Equal("60", Find("#eligible").Text);
        var rows = Browser().FindElements(By.CssSelector("#preview-table tr")).Skip(1).Select(r => r.Text).ToList();
        Assert.Equal(3, rows.Count);
        Assert.StartsWith("1 15 ", rows[0], StringComparison.Ordinal);
        var rolloutId = Find("#rollout-id").GetAttribute("value")!;
        Assert.Matches("^vibration-classifier-v1-[0-9a-f]{6}$", rolloutId);
        Shot("new-rollout");
        Find("#create").Click();
        await Until(() => Browser().Url.EndsWith("/console/rollouts/" + rolloutId, StringComparison.Ordinal), () => Browser().Url);
        Assert.Equal(rolloutId, Find("h1 #rollout-id").Text);
        // The rollout's page follows it live: its counts update (and it reloads itself when the phase moves on).
        await Until(() => Find("#live").Text.StartsWith("Live: updated", StringComparison.Ordinal), () => Find("#live").Text);
        await Until(() => int.Parse(Find("#installed").Text, System.Globalization.CultureInfo.InvariantCulture) >= 15, () => Find("#installed").Text);

        // The overview's progress bar moves as devices install (live, no reload): 15, then 30.
        Go("/console");
        var bar = $"tr[data-rollout='{rolloutId}'] .bar";
        await Until(() => int.Parse(Find(bar).GetAttribute("data-done")!, System.Globalization.CultureInfo.InvariantCulture) >= 30,
            () => $"progress stayed at {Find(bar).GetAttribute("data-done")}");
        Shot("overview-rollout");

        Go($"/console/rollouts/{rolloutId}");
        Find("#reason").SendKeys("checking the canary by hand");
        Find("#action-pause").Click();
        Assert.Contains("pause: done", Find("#message").Text, StringComparison.Ordinal); // the page after the action
        Assert.Equal("paused", Find("#state").Text);
        // Only what a paused rollout allows is offered; the destructive ones say what they will do first.
        Assert.True(Absent("#action-pause"));
        Assert.NotNull(Find("#action-resume"));
        Assert.Contains("Devices keep the version they run now", Find("#action-abort").GetAttribute("data-confirm"), StringComparison.Ordinal);
        Find("#reason").SendKeys("not yet");
        Find("#action-abort").Click();
        Browser().SwitchTo().Alert().Dismiss(); // the operator thinks again: nothing happens
        Assert.Equal("paused", Find("#state").Text);
        Shot("rollout");
        var audit = await (await _fleet.Get($"/api/audit?target={rolloutId}")).Content.ReadAsStringAsync();
        Assert.Contains("\"actor\":\"user:ada\",\"action\":\"rollout.pause\"", audit, StringComparison.Ordinal);
        Assert.Contains("\"actor\":\"user:ada\",\"action\":\"rollout.create\"", audit, StringComparison.Ordinal);

        // A validated version is approved from the registry page (and the approval names the console user).
        Cli(null, "model", "demo", "--out", P("v3.onnx"), "--seed", "44");
        Cli(null, "model", "validate", "--reference", P("v3.onnx"), "--candidate", P("v3.onnx"), "--data", P("samples"), "--max-latency-ratio", "100", "--report-out", P("report3.json"));
        Cli(_fleet, "model", "push", "--model-id", "vibration-classifier", "--card", P("card.json"), "--fp32", P("v3.onnx"), "--report", P("report3.json"));
        Go("/console/models");
        Shot("models");
        var approve = Browser().FindElements(By.CssSelector("button[value='approve']"));
        Assert.Single(approve);
        approve[0].Click();
        Assert.Equal("vibration-classifier v2 is approved", Find("#message").Text);
        var v2 = JsonNode.Parse(Cli(_fleet, "model", "show", "--model-id", "vibration-classifier", "--model-version", "2", "--json"))!;
        Assert.Equal("user:ada", v2["history"]!.AsArray()[^1]!["by"]!.GetValue<string>());
        // Operators revoke a device from its page; admins make and revoke API keys for the CLI.
        Go($"/console/devices/{id}");
        Find("#revoke").Click();
        Assert.Contains("must be enrolled again", Browser().SwitchTo().Alert().Text, StringComparison.Ordinal);
        Browser().SwitchTo().Alert().Accept();
        Assert.Contains("is revoked", Find("#message").Text, StringComparison.Ordinal);
        Assert.NotNull((await _fleet.Device(id))!["device"]!["revokedAt"]);
        Go("/console/users");
        Find("#key-name").SendKeys("ci pipeline");
        Find("#create-key").Click();
        var key = Find("#new-key").Text;
        Assert.StartsWith("efk_", key, StringComparison.Ordinal);
        Shot("users");
        using (var withKey = await _fleet.Send(HttpMethod.Get, "/api/devices", apiKey: key))
            Assert.Equal(HttpStatusCode.OK, withKey.StatusCode);
        Browser().FindElements(By.CssSelector("#keys button")).Last().Click(); // the newest key is listed last
        Browser().SwitchTo().Alert().Accept();
        // The page reloads with the message: the one the key's creation left may be read while it is replaced.
        await Until(() => Find("#message").Text.Contains("revoked", StringComparison.Ordinal), () => Find("#message").Text);
        using (var revoked = await _fleet.Send(HttpMethod.Get, "/api/devices", apiKey: key))
            Assert.Equal(HttpStatusCode.Unauthorized, revoked.StatusCode);
        Go("/console/audit");
        Shot("audit");
        // An unknown device gets the console's own page (not the browser's bare 404); the API keeps its JSON error.
        Go("/console/devices/no-such-device");
        Assert.Contains("There is nothing at /console/devices/no-such-device", Find("#not-found").Text, StringComparison.Ordinal);
        Assert.NotNull(Find("header nav"));
        Shot("not-found");

        // On a phone (412 px wide) no page scrolls sideways: the navigation wraps, wide tables scroll inside themselves.
        Browser().Manage().Window.Size = new System.Drawing.Size(412, 900);
        try
        {
            foreach (var page in new[] { "/console", "/console/devices", $"/console/devices/{id}", "/console/rollouts", $"/console/rollouts/{rolloutId}",
                "/console/models", "/console/drift", "/console/audit", "/console/users" })
            {
                Go(page);
                var (scroll, width) = (Convert.ToInt64(((IJavaScriptExecutor)Browser()).ExecuteScript("return document.documentElement.scrollWidth;")),
                    Convert.ToInt64(((IJavaScriptExecutor)Browser()).ExecuteScript("return window.innerWidth;")));
                Assert.True(scroll <= width, $"{page} is {scroll} px wide in a {width} px window");
            }
            Go("/console");
            Shot("phone-overview");
            Go("/console/devices");
            Shot("phone-devices");
        }
        finally
        {
            Browser().Manage().Window.Size = new System.Drawing.Size(1400, 1000);
        }
        using (var api = await _fleet.Get("/api/devices/no-such-device"))
        {
            Assert.Equal(HttpStatusCode.NotFound, api.StatusCode);
            Assert.Contains("\"error\"", await api.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        }
        // Filtered by action prefix; the revocation reads as the field that changed, not as raw JSON.
        Go("/console/audit?action=api-key.");
        var entries = Browser().FindElements(By.CssSelector("#audit tr")).Skip(1).Select(r => r.FindElements(By.TagName("td")).Select(c => c.Text).ToList()).ToList();
        Assert.All(entries, r => Assert.StartsWith("api-key.", r[2], StringComparison.Ordinal));
        Assert.Contains(entries, r => r[2] == "api-key.revoke" && r[4] == "revoked: false → true");
        Assert.Contains(entries, r => r[2] == "api-key.create" && r[4].Contains("name: ci pipeline", StringComparison.Ordinal));
        Shot("audit-filtered");
    }

    [Fact]
    public async Task A_viewer_does_not_see_the_actions_and_the_server_refuses_them_anyway()
    {
        await using var sim = await DevicesAsync(4);
        using var create = await _fleet.Send(HttpMethod.Post, "/api/rollouts", new JsonObject
        {
            ["id"] = "held",
            ["modelId"] = "vibration-classifier",
            ["version"] = 1,
            ["target"] = new JsonObject { ["selector"] = "simulated=true" },
            ["phases"] = new JsonArray(new JsonObject { ["percent"] = 50, ["soakSeconds"] = 3600 }, new JsonObject { ["percent"] = 100 }),
        });
        Assert.Equal(HttpStatusCode.Created, create.StatusCode);

        LogIn("vic", ViewerPassword);
        await Until(() => Browser().Url.EndsWith("/console", StringComparison.Ordinal), () => Browser().Url);
        Go("/console/rollouts");
        Assert.True(Absent("#new-rollout"));
        Go("/console/rollouts/held");
        Assert.True(Absent("#actions"));
        Assert.NotNull(Find("#phases")); // the rollout itself is there to see
        Go("/console/rollouts/new");
        Assert.NotNull(Find("#denied"));
        Go("/console/users");
        Assert.NotNull(Find("#denied"));

        // The server, not the page, decides: the viewer's session with a valid antiforgery token still cannot act.
        using var viewer = await SessionAsync("vic", ViewerPassword);
        var page = await viewer.GetStringAsync("/console/rollouts/held");
        using var pause = await viewer.PostAsync("/console/rollouts/held", Form(page, ("action", "pause"), ("reason", "x")));
        Assert.Equal(HttpStatusCode.Redirect, pause.StatusCode);
        Assert.StartsWith("/console/denied", pause.Headers.Location!.PathAndQuery, StringComparison.Ordinal);
        using var newRollout = await viewer.PostAsync("/console/rollouts/new?handler=Create", Form(page, ("Version", "vibration-classifier@1"), ("Selector", "simulated=true")));
        Assert.Equal(HttpStatusCode.Redirect, newRollout.StatusCode);
        Assert.StartsWith("/console/denied", newRollout.Headers.Location!.PathAndQuery, StringComparison.Ordinal);
        Assert.Equal("running", JsonNode.Parse(await (await _fleet.Get("/api/rollouts/held")).Content.ReadAsStringAsync())!["state"]!.GetValue<string>());
        Assert.Single(JsonNode.Parse(await (await _fleet.Get("/api/rollouts")).Content.ReadAsStringAsync())!.AsArray());

        // An admin's session without the antiforgery token (a cross-site form) is refused.
        using var admin = await SessionAsync("ada", AdminPassword);
        using var forged = await admin.PostAsync("/console/rollouts/held", new FormUrlEncodedContent([new("action", "pause"), new("reason", "forged")]));
        Assert.Equal(HttpStatusCode.BadRequest, forged.StatusCode);
        // No session: pages send to the login, actions are refused, and the API does not take the console's cookie.
        using var anonymous = Client();
        using var overview = await anonymous.GetAsync("/console");
        Assert.Equal(HttpStatusCode.Redirect, overview.StatusCode);
        Assert.StartsWith("/console/login", overview.Headers.Location!.PathAndQuery, StringComparison.Ordinal);
        using var anonymousPause = await anonymous.PostAsync("/console/rollouts/held", Form(page, ("action", "pause"), ("reason", "x")));
        Assert.NotEqual(HttpStatusCode.OK, anonymousPause.StatusCode);
        using var api = await admin.GetAsync("/api/devices");
        Assert.Equal(HttpStatusCode.Unauthorized, api.StatusCode);
        Assert.Equal("running", JsonNode.Parse(await (await _fleet.Get("/api/rollouts/held")).Content.ReadAsStringAsync())!["state"]!.GetValue<string>());
    }

    [Fact]
    public async Task Five_wrong_passwords_lock_the_account_and_a_disabled_user_loses_the_session()
    {
        using var viewer = await SessionAsync("vic", ViewerPassword);
        Assert.Equal(HttpStatusCode.OK, (await viewer.GetAsync("/console/devices")).StatusCode);
        for (var i = 0; i < 5; i++)
            Assert.Equal(HttpStatusCode.Unauthorized, (await LogInAsync(Client(), "ada", "wrong password " + i)).StatusCode);
        var refused = await LogInAsync(Client(), "ada", AdminPassword); // the right one, too late
        Assert.Equal(HttpStatusCode.Unauthorized, refused.StatusCode);
        Assert.Contains("locked after repeated failures", await refused.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        Assert.Equal(HttpStatusCode.Unauthorized, (await LogInAsync(Client(), "nobody", "whatever it is")).StatusCode);
        var users = JsonNode.Parse(Cli(_fleet, "users", "list", "--json"))!.AsArray();
        Assert.NotNull(users.Single(u => u!["username"]!.GetValue<string>() == "ada")!["lockedUntil"]);

        // Enabling clears the lockout; disabling ends the viewer's session at its next request.
        Cli(_fleet, "users", "set", "--username", "ada", "--enable");
        Assert.Equal(HttpStatusCode.Redirect, (await LogInAsync(Client(), "ada", AdminPassword)).StatusCode);
        Cli(_fleet, "users", "set", "--username", "vic", "--disable");
        using var after = await viewer.GetAsync("/console/devices");
        Assert.Equal(HttpStatusCode.Redirect, after.StatusCode);
        var audit = await (await _fleet.Get("/api/audit?target=user:ada")).Content.ReadAsStringAsync();
        Assert.Contains("locked for 15 minutes", audit, StringComparison.Ordinal);
        Assert.DoesNotContain(AdminPassword, audit, StringComparison.Ordinal);
        Assert.DoesNotContain(AdminPassword, _fleet.Output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Password_guessing_from_one_address_is_throttled_across_usernames_and_audited()
    {
        // A spray: one guess per username, so no account reaches its own lockout.
        for (var i = 0; i < 10; i++)
            Assert.Equal(HttpStatusCode.Unauthorized, (await LogInAsync(Client(), $"user{i}", "wrong password " + i)).StatusCode);
        var refused = await LogInAsync(Client(), "ada", AdminPassword); // right, but from the guessing address
        Assert.Equal(HttpStatusCode.Unauthorized, refused.StatusCode);
        Assert.Contains("too many failed logins from this address", await refused.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        var audit = await (await _fleet.Get("/api/audit?target=user:ada")).Content.ReadAsStringAsync();
        Assert.Contains("login.throttled", audit, StringComparison.Ordinal);
        var users = JsonNode.Parse(Cli(_fleet, "users", "list", "--json"))!.AsArray();
        Assert.Null(users.Single(u => u!["username"]!.GetValue<string>() == "ada")!["lockedUntil"]); // the account itself is not locked
    }

    private HttpClient Client() => ConsoleSession.Client(_fleet);

    private static Task<HttpResponseMessage> LogInAsync(HttpClient client, string user, string password) => ConsoleSession.LogInAsync(client, user, password);

    private Task<HttpClient> SessionAsync(string user, string password) => ConsoleSession.StartAsync(_fleet, user, password);

    private static FormUrlEncodedContent Form(string page, params (string Name, string Value)[] fields) => ConsoleSession.Form(page, fields);

    public void Dispose()
    {
        try
        {
            _browser?.Quit();
        }
        catch (WebDriverException)
        {
        }
        _browser?.Dispose();
        _fleet.Dispose();
        try
        {
            Directory.Delete(_dir, recursive: true);
        }
        catch (IOException)
        {
        }
    }
}
