using System.Threading.Channels;

namespace EdgeFleet.Fleet.Broker;

/// <summary>
/// Messages the fleet sends back to devices (telemetry acks), published by <see cref="FleetMqttClient"/> from
/// this bounded queue so that no handler waits on its own publishes. When it is full, writers wait.
/// </summary>
public sealed class ReplyQueue
{
    private readonly Channel<Reply> _channel = Channel.CreateBounded<Reply>(new BoundedChannelOptions(20_000)
    {
        FullMode = BoundedChannelFullMode.Wait,
        SingleReader = true,
    });

    public ValueTask WriteAsync(Reply reply, CancellationToken ct) => _channel.Writer.WriteAsync(reply, ct);

    public ChannelReader<Reply> Reader => _channel.Reader;
}
