using EdgeFleet.Fleet.Broker.Listener;

namespace EdgeFleet.Fleet.Tests;

public class PacketLimitStreamTests
{
    private static readonly PacketLimits Limits = new(ConnectBytes: 100, PacketBytes: 1000);

    /// <summary>A packet: type byte, remaining length as MQTT's variable byte integer, body.</summary>
    private static byte[] Packet(byte type, int length)
    {
        var header = new List<byte> { type };
        var n = length;
        do
        {
            var b = (byte)(n % 128);
            n /= 128;
            header.Add(n > 0 ? (byte)(b | 0x80) : b);
        }
        while (n > 0);
        return [.. header, .. new byte[length]];
    }

    /// <summary>Reads everything through the limiter, <paramref name="chunk"/> bytes at a time; returns how many were handed on.</summary>
    private static async Task<int> ReadAllAsync(byte[] wire, int chunk, Action? connected = null)
    {
        using var stream = new MqttPacketLimitStream(new MemoryStream(wire), Limits, connected);
        var buffer = new byte[chunk];
        var total = 0;
        int read;
        while ((read = await stream.ReadAsync(buffer)) > 0)
            total += read;
        return total;
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(7)]
    [InlineData(4096)]
    public async Task Packets_within_their_limits_pass_whatever_the_read_sizes(int chunk)
    {
        byte[] wire = [.. Packet(0x10, 100), .. Packet(0x30, 1000), .. Packet(0xc0, 0), .. Packet(0x32, 200), .. Packet(0x30, 129)];
        var connects = 0;
        Assert.Equal(wire.Length, await ReadAllAsync(wire, chunk, () => connects++));
        Assert.Equal(1, connects);
    }

    [Theory]
    [InlineData(1)]
    [InlineData(4096)]
    public async Task A_connect_over_the_pre_authentication_limit_is_refused_before_its_header_is_handed_on(int chunk)
    {
        var e = await Assert.ThrowsAsync<MqttPacketRefusedException>(() => ReadAllAsync([0x10, 0xff, 0xff, 0xff, 0x7f], chunk));
        Assert.Contains("268435455", e.Message, StringComparison.Ordinal);
        await Assert.ThrowsAsync<MqttPacketRefusedException>(() => ReadAllAsync(Packet(0x10, 101), chunk));
    }

    [Fact]
    public async Task After_connect_the_packet_limit_applies()
    {
        await Assert.ThrowsAsync<MqttPacketRefusedException>(() => ReadAllAsync([.. Packet(0x10, 10), .. Packet(0x30, 1001)], 64));
    }

    [Theory]
    [InlineData(new byte[] { 0x30, 0x00 })]
    [InlineData(new byte[] { 0x82, 0x05, 0, 1, 0, 0, 0 })]
    [InlineData(new byte[] { 0x11, 0x00 })]
    public async Task The_first_packet_must_be_connect(byte[] wire)
    {
        await Assert.ThrowsAsync<MqttPacketRefusedException>(() => ReadAllAsync(wire, 16));
    }

    [Fact]
    public async Task A_remaining_length_of_more_than_four_bytes_is_malformed()
    {
        var e = await Assert.ThrowsAsync<MqttPacketRefusedException>(() => ReadAllAsync([0x10, 0x80, 0x80, 0x80, 0x80, 0x01], 1));
        Assert.Contains("malformed", e.Message, StringComparison.Ordinal);
    }
}
