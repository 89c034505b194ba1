using EdgeFleet.Fleet;
using EdgeFleet.Fleet.Devices;
using EdgeFleet.Fleet.Ota;

var builder = WebApplication.CreateSlimBuilder(args);
builder.Logging.AddSimpleConsole(o =>
{
    o.SingleLine = true;
    o.TimestampFormat = "HH:mm:ss.fff ";
});
var options = builder.Services.AddFleetOptions(builder.Configuration);
builder.Services
    .AddFleetStorage()
    .AddFleetBroker(options.Broker);

var app = builder.Build();
app.MapFleetApi();
app.MapOtaApi();
app.MapGet("/", () => Results.Redirect("/api/devices"));
app.Run();
