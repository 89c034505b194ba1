using EdgeFleet.Agent.Profiles;
using EdgeFleet.Shared.Cli;
using EdgeFleet.Agent.Configuration;
using EdgeFleet.Agent.Health;
using EdgeFleet.Agent.Identity;
using EdgeFleet.Agent.Inference;
using EdgeFleet.Agent.Ota;
using EdgeFleet.Agent.Sync;
using EdgeFleet.Agent.Telemetry;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace EdgeFleet.Agent;

/// <summary>The wiring of <c>edgefleet-agent run</c>: configuration, state, and the background services.</summary>
public static partial class AgentHost
{
    public static async Task<int> RunAsync(CommandLine args)
    {
        args.AllowOnly("config");
        var config = AgentConfigLoader.Load(args.Get("config") ?? AgentConfigLoader.DefaultPath);
        Directory.CreateDirectory(config.StateDirectory);
        var credentials = DeviceCredentials.Load(config.StateDirectory);
        config = credentials.Apply(config);
        var (profile, profileNote) = ResolveProfile(config);
        var runtime = new AgentRuntime(DeviceIdentity.Resolve(config), profile.Name,
            new Timekeeping.DeviceClock(TimeProvider.System, config.StateDirectory)) { Profile = profile };

        var builder = Host.CreateEmptyApplicationBuilder(new HostApplicationBuilderSettings());
        if (Environment.GetEnvironmentVariable("JOURNAL_STREAM") is not null)
        {
            builder.Logging.AddSystemdConsole(); // journald adds its own timestamps and reads the priority prefix
        }
        else
        {
            builder.Logging.AddSimpleConsole(o =>
            {
                o.SingleLine = true;
                o.TimestampFormat = "HH:mm:ss.fff ";
            });
        }
        builder.Logging.SetMinimumLevel(config.LogLevel);
        // Our own sd_notify (READY, STATUS, WATCHDOG, STOPPING) rather than AddSystemd(), which recognises
        // systemd only as the direct parent process and sends no watchdog pings.
        builder.Services.AddSingleton(_ => SystemdNotifier.FromEnvironment());
        builder.Services.AddHostedService<SystemdService>();
        builder.Services.Configure<HostOptions>(o => o.ShutdownTimeout = TimeSpan.FromSeconds(5));
        builder.Services.AddSingleton(config);
        builder.Services.AddSingleton(credentials);
        builder.Services.AddSingleton(runtime);
        builder.Services.AddSingleton(sp => new TelemetryBuffer(Path.Combine(config.StateDirectory, "telemetry.db"), config.Telemetry, runtime.Time,
            sp.GetRequiredService<ILoggerFactory>().CreateLogger<TelemetryBuffer>()));
        builder.Services.AddSingleton<SyncService>();
        builder.Services.AddSingleton(_ => new ModelHost(runtime, config.Fallback));
        builder.Services.AddSingleton(_ => new OtaStore(Path.Combine(config.StateDirectory, "ota.db")));
        // Start order matters: OTA picks and loads the model to serve before inference starts.
        builder.Services.AddHostedService<OtaService>();
        builder.Services.AddHostedService(sp => sp.GetRequiredService<SyncService>());
        builder.Services.AddHostedService<InferenceService>();
        builder.Services.AddSingleton<InferenceMetrics>();
        builder.Services.AddSingleton<DriftWindows>(); // the sensor loop and the local API sketch into the same windows
        builder.Services.AddHostedService<LocalApi.LocalApiService>();
        builder.Services.AddHostedService<HealthService>();

        using var host = builder.Build();
        var log = host.Services.GetRequiredService<ILoggerFactory>().CreateLogger("EdgeFleet.Agent.Profiles");
        if (profileNote is not null)
            Log.ProfileNote(log, profileNote);
        Log.ProfileInUse(log, profile.Name, string.Join(" > ", profile.ExecutionProviders.Select(p => p.Name)));
        await host.RunAsync().ConfigureAwait(false);
        return 0;
    }

    /// <summary>The configured hardware profile, or with "auto" the one <see cref="ProfileDetector"/> names.</summary>
    internal static (HardwareProfile Profile, string? Note) ResolveProfile(AgentConfig config)
    {
        if (config.HardwareProfile != "auto")
            return HardwareProfiles.Resolve(config.HardwareProfile, config.ProfilesDirectory);
        var profiles = HardwareProfiles.LoadAll(config.ProfilesDirectory);
        var report = new ProfileDetector().Detect(profiles);
        return report.Best is { } best
            ? (profiles.First(p => p.Name == best), $"detected hardware profile {best}: {string.Join("; ", report.Profiles.First(p => p.Profile == best).Reasons)}")
            : (HardwareProfile.CpuOnly("cpu"), "no hardware profile matches this device; running on the CPU");
    }

    private static partial class Log
    {
        [LoggerMessage(1101, LogLevel.Information, "{Note}")]
        public static partial void ProfileNote(ILogger logger, string note);

        [LoggerMessage(1102, LogLevel.Information, "Hardware profile {Profile}: execution providers {Providers}")]
        public static partial void ProfileInUse(ILogger logger, string profile, string providers);
    }
}
