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
}
