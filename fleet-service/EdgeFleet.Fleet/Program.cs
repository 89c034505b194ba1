using EdgeFleet.Fleet.Rollouts;
using EdgeFleet.Fleet.Models;
using EdgeFleet.Fleet.Groups;
using EdgeFleet.Fleet;
using EdgeFleet.Fleet.Devices;
using EdgeFleet.Fleet.Identity;
using EdgeFleet.Fleet.Ota;
using EdgeFleet.Fleet.Console;
using EdgeFleet.Fleet.Drift;
using EdgeFleet.Fleet.Retraining;

var builder = WebApplication.CreateSlimBuilder(args);
// Under systemd (packaging/fleet/edgefleet-fleet.service, Type=notify): READY when listening, journald log format.
builder.Services.AddSystemd();
if (!Microsoft.Extensions.Hosting.Systemd.SystemdHelpers.IsSystemdService())
{
    builder.Logging.AddSimpleConsole(o =>
    {
        o.SingleLine = true;
        o.TimestampFormat = "HH:mm:ss.fff ";
    });
}
// Settings in /etc go after the files beside the binary and before environment variables and arguments,
// which keep the last word.
var sources = builder.Configuration.Sources;
var afterFiles = sources.Select((source, index) => (source, index)).LastOrDefault(s => s.source is Microsoft.Extensions.Configuration.Json.JsonConfigurationSource).index + 1;
var etc = new Microsoft.Extensions.Configuration.Json.JsonConfigurationSource { Path = "/etc/edgefleet-fleet/appsettings.Production.json", Optional = true };
etc.ResolveFileProvider();
sources.Insert(afterFiles, etc);
WebApplication app;
try
{
    var options = builder.Services.AddFleetOptions(builder.Configuration);
    if (options.Tls.Enabled)
    {
        // The slim builder leaves HTTPS out; with a configured certificate every https:// URL uses it.
        var certificate = options.Tls.LoadCertificate();
        builder.WebHost.UseKestrelHttpsConfiguration();
        builder.WebHost.ConfigureKestrel(k => k.ConfigureHttpsDefaults(https => https.ServerCertificate = certificate));
    }
    builder.Services
        .AddFleetStorage()
        .AddFleetIdentity(options)
        .AddFleetScaleOut()
        .AddFleetBroker(options.Broker);
    // The web console: server-rendered Razor Pages under /console, cookie sessions for console users.
    EdgeFleet.Fleet.Console.ConsoleAuth.AddTo(builder.Services, options.Tls.Enabled);
    builder.Services.AddRazorPages(o =>
    {
        o.RootDirectory = "/Console/Pages";
        o.Conventions.AuthorizeFolder("/", EdgeFleet.Fleet.Console.ConsoleAuth.ViewerPolicy);
    });

    app = builder.Build();
    // The store opens here, not at the first request: a store it cannot open is a refusal to start, before anything listens.
    app.Services.GetRequiredService<EdgeFleet.Fleet.Storage.IFleetStore>();
    // The console answers an unknown device, rollout or path with its own page; the API keeps its JSON errors.
    app.UseWhen(c => c.Request.Path.StartsWithSegments("/console"), console => console.UseStatusCodePagesWithReExecute("/console/not-found", "?code={0}"));
    app.UseRouting();
    app.UseAuthentication();
    app.UseAuthorization();
    app.MapFleetApi();
    app.MapIdentityApi();
    app.MapGroupsApi();
    app.MapOtaApi();
    app.MapModelsApi();
    app.MapRolloutsApi();
    app.MapUsersApi();
    app.MapDriftApi();
    app.MapRetrainingApi();
    app.UseServerTiming();
    app.MapRazorPages();
    app.MapConsoleEvents();
    app.MapGet("/", () => Results.Redirect("/console"));
}
catch (Exception e) when (StartupRefusal.Explain(e) is { } reason)
{
    await Console.Error.WriteLineAsync($"edgefleet-fleet cannot start: {reason}");
    return 1;
}
app.Run();
return 0;
