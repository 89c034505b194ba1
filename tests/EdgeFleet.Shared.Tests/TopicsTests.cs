using EdgeFleet.Shared.Wire;

namespace EdgeFleet.Shared.Tests;

public class TopicsTests
{
    [Theory]
    [InlineData(TopicKind.Hello, "ef/v1/pump-01/hello")]
    [InlineData(TopicKind.Telemetry, "ef/v1/pump-01/telemetry")]
    [InlineData(TopicKind.TelemetryAck, "ef/v1/pump-01/telemetry/ack")]
    [InlineData(TopicKind.StateDesired, "ef/v1/pump-01/state/desired")]
    [InlineData(TopicKind.StateReported, "ef/v1/pump-01/state/reported")]
    [InlineData(TopicKind.OtaStatus, "ef/v1/pump-01/ota/status")]
    public void Builds_and_parses_the_v1_scheme(TopicKind kind, string topic)
    {
        Assert.Equal(topic, Topics.For("pump-01", kind));
        Assert.True(Topics.TryParse(topic, out var id, out var parsed));
        Assert.Equal("pump-01", id);
        Assert.Equal(kind, parsed);
    }

    [Theory]
    [InlineData("ef/v2/pump-01/hello")]
    [InlineData("ef/v1//hello")]
    [InlineData("ef/v1/pump-01/hello/extra")]
    [InlineData("ef/v1/+/hello")]
    [InlineData("ef/v1/#")]
    [InlineData("ef/v1/PUMP/hello")]
    [InlineData("ef/v1/pump-01/unknown")]
    [InlineData("")]
    public void Rejects_topics_outside_the_scheme(string topic) => Assert.False(Topics.TryParse(topic, out _, out _));

    [Theory]
    [InlineData("pump-01", true)]
    [InlineData("a", true)]
    [InlineData("dev.site_3", true)]
    [InlineData("", false)]
    [InlineData("-leading", false)]
    [InlineData("Upper", false)]
    [InlineData("has/slash", false)]
    [InlineData("plus+", false)]
    [InlineData("hash#", false)]
    public void Device_ids_are_topic_and_file_safe(string id, bool valid) => Assert.Equal(valid, DeviceId.IsValid(id));

    [Fact]
    public void Device_ids_are_at_most_64_characters()
    {
        Assert.True(DeviceId.IsValid(new string('a', 64)));
        Assert.False(DeviceId.IsValid(new string('a', 65)));
    }

    [Fact]
    public void Direction_of_each_topic()
    {
        Assert.True(Topics.IsFromDevice(TopicKind.Telemetry));
        Assert.False(Topics.IsFromDevice(TopicKind.TelemetryAck));
        Assert.False(Topics.IsFromDevice(TopicKind.StateDesired));
    }
}
