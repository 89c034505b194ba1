using EdgeFleet.Fleet.Broker;
using EdgeFleet.Fleet.Devices;
using EdgeFleet.Fleet.Identity;
using EdgeFleet.Fleet.Ota;
using EdgeFleet.Fleet.Storage;
using EdgeFleet.Fleet.Telemetry;

namespace EdgeFleet.Fleet;

/// <summary>Host wiring, one method per feature; the features themselves are plain classes.</summary>
public static class FleetServiceExtensions
{
    /// <summary>Binds and validates the <c>Fleet</c> section; a bad value stops start-up with its reason.</summary>
    public static FleetOptions AddFleetOptions(this IServiceCollection services, IConfiguration configuration)
    {
        var options = configuration.GetSection(FleetOptions.Section).Get<FleetOptions>() ?? new FleetOptions();
        if (options.Validate() is { } problem)
            throw new InvalidOperationException($"invalid configuration: {problem}");
        services.AddSingleton(options);
        services.AddSingleton(TimeProvider.System);
        return options;
    }

    public static IServiceCollection AddFleetStorage(this IServiceCollection services)
    {
        services.AddSingleton<IFleetStore>(sp =>
        {
            var storage = sp.GetRequiredService<FleetOptions>().Storage;
            // Opened (and for PostgreSQL migrated) once at start-up, before anything reads or writes.
            return storage.IsPostgreSql
                ? PostgresFleetStore.OpenAsync(storage.ConnectionString!, CancellationToken.None).GetAwaiter().GetResult()
                : new LiteDbFleetStore(storage.Path);
        });
        services.AddSingleton(sp => new ArtifactStore(sp.GetRequiredService<FleetOptions>().Storage.ArtifactsPath));
        services.AddSingleton<EdgeFleet.Fleet.Ota.ChunkServer>();
        services.AddSingleton<EdgeFleet.Fleet.Ota.DeltaCatalog>();
        return services;
    }

    /// <summary>Device credentials, operator API keys and their roles, and the first admin key.</summary>
    public static IServiceCollection AddFleetIdentity(this IServiceCollection services, FleetOptions options)
    {
        services.AddSingleton(options.Security);
        services.AddSingleton<DeviceRevocation>();
        services.AddSingleton<DeviceAuthenticator>();
        services.AddSingleton<AttemptLimiter>();
        ApiAuthentication.AddTo(services);
        var keyPath = options.Security.AdminKeyPath;
        if (!Path.IsPathRooted(keyPath) && !options.Storage.IsPostgreSql)
            keyPath = Path.Combine(Path.GetDirectoryName(Path.GetFullPath(options.Storage.Path))!, keyPath);
        services.AddHostedService<ReservedIdentities>();
        services.AddHostedService(sp => new AdminKeyBootstrap(sp.GetRequiredService<IFleetStore>(), keyPath,
            sp.GetRequiredService<TimeProvider>(), sp.GetRequiredService<ILogger<AdminKeyBootstrap>>()));
        return services;
    }

    /// <summary>Scheduler leadership among instances sharing one PostgreSQL.</summary>
    public static IServiceCollection AddFleetScaleOut(this IServiceCollection services)
    {
        services.AddSingleton<Scale.LeaderElection>();
        services.AddHostedService(sp => sp.GetRequiredService<Scale.LeaderElection>());
        return services;
    }

    public static IServiceCollection AddFleetBroker(this IServiceCollection services, BrokerOptions broker)
    {
        services.AddSingleton<FleetMetrics>();
        services.AddSingleton(sp => BrokerConnection.For(sp.GetRequiredService<FleetOptions>().Broker));
        services.AddSingleton<ReplyQueue>();
        services.AddSingleton<TelemetryIngest>();
        services.AddSingleton<DeviceMessageRouter>();
        if (broker.Mode == BrokerMode.External && broker.DeviceAccounts == DeviceAccounts.MosquittoDynamicSecurity)
        {
            services.AddSingleton(sp => new MosquittoDynamicSecurity(broker, sp.GetRequiredService<DeviceRevocation>(),
                sp.GetRequiredService<ILogger<MosquittoDynamicSecurity>>()));
        }
        services.AddSingleton<FleetMqttClient>();
        // Ingest starts before and stops after what feeds it (the embedded broker, the fleet's client), so
        // queued batches are still stored; the embedded broker listens before the fleet's client connects.
        services.AddHostedService(sp => sp.GetRequiredService<TelemetryIngest>());
        if (broker.Mode == BrokerMode.Embedded)
        {
            services.AddSingleton(sp => new EmbeddedBroker(
                broker, sp.GetRequiredService<FleetOptions>().Tls, sp.GetRequiredService<BrokerConnection>(), sp.GetRequiredService<DeviceAuthenticator>(),
                sp.GetRequiredService<DeviceRevocation>(), sp.GetRequiredService<DeviceMessageRouter>(), sp.GetRequiredService<FleetMetrics>(),
                sp.GetRequiredService<TimeProvider>(), sp.GetRequiredService<ILogger<EmbeddedBroker>>()));
            services.AddHostedService(sp => sp.GetRequiredService<EmbeddedBroker>());
        }
        services.AddHostedService(sp => sp.GetRequiredService<FleetMqttClient>());
        services.AddSingleton<Rollouts.RolloutSigner>();
        services.AddSingleton<Rollouts.RolloutEngine>();
        services.AddHostedService(sp => sp.GetRequiredService<Rollouts.RolloutEngine>());
        services.AddSingleton<Drift.IDriftNotifier, Drift.DriftNotifier>();
        services.AddSingleton<Drift.DriftMonitor>();
        services.AddHostedService(sp => sp.GetRequiredService<Drift.DriftMonitor>());
        services.AddSingleton<Retraining.RetrainingPipeline>();
        services.AddSingleton<Retraining.RetrainingExecutors>();
        services.AddSingleton<Retraining.RetrainingScheduler>();
        services.AddHostedService(sp => sp.GetRequiredService<Retraining.RetrainingScheduler>());
        services.ConfigureHttpJsonOptions(o => o.SerializerOptions.TypeInfoResolverChain.Insert(0, FleetApiJsonContext.Default));
        return services;
    }
}
