using EdgeFleet.Fleet.Broker;

namespace EdgeFleet.Fleet.Tests;

public class TopicAccessTests
{
    [Theory]
    [InlineData("ef/v1/d1/hello", true)]
    [InlineData("ef/v1/d1/telemetry", true)]
    [InlineData("ef/v1/d1/state/reported", true)]
    [InlineData("ef/v1/d1/ota/status", true)]
    [InlineData("ef/v1/d2/telemetry", false)]
    [InlineData("ef/v1/d1/telemetry/ack", false)]
    [InlineData("ef/v1/d1/state/desired", false)]
    [InlineData("ef/v1/d1/anything", false)]
    [InlineData("other/topic", false)]
    public void A_device_publishes_only_its_own_device_topics(string topic, bool allowed) =>
        Assert.Equal(allowed, TopicAccess.MayPublish("d1", topic));

    [Theory]
    [InlineData("ef/v1/d1/telemetry/ack", true)]
    [InlineData("ef/v1/d1/state/desired", true)]
    [InlineData("ef/v1/d1/#", true)]
    [InlineData("ef/v1/d1/", false)]
    [InlineData("ef/v1/d1/+/ack", false)]
    [InlineData("ef/v1/+/telemetry/ack", false)]
    [InlineData("ef/v1/#", false)]
    [InlineData("#", false)]
    [InlineData("ef/v1/d10/#", false)]
    [InlineData("ef/v1/d1/a#", false)]
    public void A_device_subscribes_only_under_its_own_prefix(string filter, bool allowed) =>
        Assert.Equal(allowed, TopicAccess.MaySubscribe("d1", filter));
}
