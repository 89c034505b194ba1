namespace EdgeFleet.Fleet.Tests;

public class FleetOptionsTests
{
    [Fact]
    public void Defaults_are_valid() => Assert.Null(new FleetOptions().Validate());

    [Theory]
    [InlineData(70000, BrokerMode.Embedded, "127.0.0.1", "data/fleet.db", 90, "Port")]
    [InlineData(1883, BrokerMode.External, " ", "data/fleet.db", 90, "Host")]
    [InlineData(1883, BrokerMode.Embedded, "127.0.0.1", "", 90, "Storage:Path")]
    [InlineData(1883, BrokerMode.Embedded, "127.0.0.1", "data/fleet.db", 0, "OfflineAfterSeconds")]
    public void Invalid_settings_name_the_key(int port, BrokerMode mode, string host, string path, double offline, string key)
    {
        var options = new FleetOptions
        {
            Broker = new BrokerOptions { Port = port, Mode = mode, Host = host },
            Storage = new StorageOptions { Path = path },
            OfflineAfterSeconds = offline,
        };
        Assert.Contains(key, options.Validate(), StringComparison.Ordinal);
    }

    [Fact]
    public void Retraining_executors_are_a_command_or_a_signed_webhook_that_can_call_back()
    {
        static string? Check(RetrainingExecutorOptions executor, string? callback = "https://fleet.example", string name = "demo") =>
            new FleetOptions { Retraining = new RetrainingOptions { CallbackUrl = callback, Executors = new() { [name] = executor } } }.Validate();
        Assert.Null(Check(new() { Command = "/usr/bin/retrain", Arguments = ["--kind", "demo"] }, callback: null));
        Assert.Null(Check(new() { Url = "https://trainer.example/jobs", SecretFile = "/etc/edgefleet/hook.secret" }));
        Assert.Contains("exactly one of Command and Url", Check(new() { Command = "/bin/true", Url = "https://x.example" }), StringComparison.Ordinal);
        Assert.Contains("exactly one of Command and Url", Check(new()), StringComparison.Ordinal);
        Assert.Contains("SecretFile", Check(new() { Url = "https://trainer.example/jobs" }), StringComparison.Ordinal);
        Assert.Contains("CallbackUrl", Check(new() { Url = "https://trainer.example/jobs", SecretFile = "s" }, callback: null), StringComparison.Ordinal);
        Assert.Contains("http(s) URL", Check(new() { Url = "ftp://x", SecretFile = "s" }), StringComparison.Ordinal);
        Assert.Contains("executor names", Check(new() { Command = "/bin/true" }, name: "Bad Name"), StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(BrokerMode.Embedded, "edgefleet-fleet", false)]
    [InlineData(BrokerMode.External, null, false)]
    [InlineData(BrokerMode.External, "edgefleet-fleet", true)]
    public void Mosquitto_device_accounts_need_an_external_broker_and_its_admin_account(BrokerMode mode, string? username, bool valid)
    {
        var options = new FleetOptions { Broker = new BrokerOptions { Mode = mode, Username = username, DeviceAccounts = DeviceAccounts.MosquittoDynamicSecurity } };
        Assert.Equal(valid, options.Validate() is null);
    }

    [Fact]
    public void The_embedded_broker_secret_is_random_and_never_printed()
    {
        var a = Broker.BrokerConnection.For(new BrokerOptions());
        var b = Broker.BrokerConnection.For(new BrokerOptions());
        Assert.NotEqual(a.Password, b.Password);
        Assert.DoesNotContain(a.Password!, a.ToString(), StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(null, false, "127.0.0.1", "::1")]
    [InlineData(null, true, "0.0.0.0", "::")]
    [InlineData("*", false, "0.0.0.0", "::")]
    [InlineData("192.168.1.10", false, "192.168.1.10", "255.255.255.255")]
    [InlineData("::1", true, "255.255.255.255", "::1")]
    public void The_embedded_broker_binds_loopback_unless_told_otherwise_or_under_tls(string? bind, bool tls, string v4, string v6)
    {
        var (a4, a6) = new BrokerOptions { BindAddress = bind }.DeviceListener(tls);
        Assert.Equal(v4, a4.ToString());
        Assert.Equal(v6, a6.ToString());
    }

    [Theory]
    [InlineData("fleet.example", "BindAddress")]
    public void A_bind_address_that_is_not_an_address_is_refused(string bind, string key) =>
        Assert.Contains(key, new FleetOptions { Broker = new BrokerOptions { BindAddress = bind } }.Validate(), StringComparison.Ordinal);

    [Fact]
    public void Pre_authentication_limits_are_checked()
    {
        Assert.Contains("MaxPendingConnections", new FleetOptions { Broker = new BrokerOptions { MaxPendingConnections = 0 } }.Validate(), StringComparison.Ordinal);
        Assert.Contains("ConnectTimeoutSeconds", new FleetOptions { Broker = new BrokerOptions { ConnectTimeoutSeconds = 0 } }.Validate(), StringComparison.Ordinal);
        Assert.Contains("MaxConnectBytes", new FleetOptions { Broker = new BrokerOptions { MaxConnectBytes = 10 } }.Validate(), StringComparison.Ordinal);
        // A packet limit below a telemetry payload would refuse the devices' own batches.
        Assert.Contains("MaxPacketBytes", new FleetOptions { Broker = new BrokerOptions { MaxPacketBytes = 64 * 1024 } }.Validate(), StringComparison.Ordinal);
        Assert.Contains("MaxFailedAttemptsPerMinute", new FleetOptions { Security = new SecurityOptions { MaxFailedAttemptsPerMinute = 0 } }.Validate(), StringComparison.Ordinal);
    }
}
