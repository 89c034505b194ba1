using EdgeFleet.Fleet;
using EdgeFleet.Fleet.Devices;
using EdgeFleet.Fleet.Ota;

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
builder.Configuration.AddJsonFile("/etc/edgefleet-fleet/appsettings.Production.json", optional: true, reloadOnChange: false);
var options = builder.Services.AddFleetOptions(builder.Configuration);
builder.Services
    .AddFleetStorage()
    .AddFleetBroker(options.Broker);

var app = builder.Build();
app.MapFleetApi();
app.MapOtaApi();
app.MapGet("/", () => Results.Redirect("/api/devices"));
app.Run();
