namespace EdgeFleet.Fleet.Broker.Listener;

/// <summary>
/// Reads an MQTT byte stream for the broker and follows its packet framing (fixed header: type byte, then the
/// remaining length as a variable byte integer). A packet that announces more than the limit is refused
/// before the broker sees its header, so the broker never reserves memory for what a client merely announces.
/// Before the first packet (which must be CONNECT) is complete the limit is <see cref="PacketLimits.ConnectBytes"/>;
/// after it, <see cref="PacketLimits.PacketBytes"/>.
/// </summary>
public sealed class MqttPacketLimitStream(Stream inner, PacketLimits limits, Action? connectReceived = null) : Stream
{
    private const byte ConnectType = 0x10;

    private enum Part { Type, Length, Body }

    private Part _part = Part.Type;
    private long _remaining;
    private int _lengthShift;
    private bool _connectSeen;

    /// <summary>Whether the whole CONNECT packet has been read.</summary>
    public bool ConnectReceived => _connectSeen;

    public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        var read = await inner.ReadAsync(buffer, cancellationToken).ConfigureAwait(false);
        Scan(buffer.Span[..read]);
        return read;
    }

    public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    public override int Read(byte[] buffer, int offset, int count)
    {
        var read = inner.Read(buffer, offset, count);
        Scan(buffer.AsSpan(offset, read));
        return read;
    }

    /// <summary>Follows the framing over bytes about to be handed to the broker; throws on a packet it must not read.</summary>
    private void Scan(ReadOnlySpan<byte> bytes)
    {
        var i = 0;
        while (i < bytes.Length)
        {
            switch (_part)
            {
                case Part.Type:
                    if (!_connectSeen && bytes[i] != ConnectType)
                        throw new MqttPacketRefusedException($"the first packet is type 0x{bytes[i]:x2}, not CONNECT");
                    _part = Part.Length;
                    _remaining = 0;
                    _lengthShift = 0;
                    i++;
                    break;
                case Part.Length:
                    var b = bytes[i++];
                    _remaining |= (long)(b & 0x7f) << _lengthShift;
                    _lengthShift += 7;
                    if ((b & 0x80) != 0)
                    {
                        if (_lengthShift >= 28)
                            throw new MqttPacketRefusedException("malformed remaining length");
                        break;
                    }
                    var limit = _connectSeen ? limits.PacketBytes : limits.ConnectBytes;
                    if (_remaining > limit)
                    {
                        throw new MqttPacketRefusedException(_connectSeen
                            ? $"a packet of {_remaining} bytes is over the limit of {limit}"
                            : $"a CONNECT of {_remaining} bytes is over the limit of {limit} before authentication");
                    }
                    _part = Part.Body;
                    if (_remaining == 0)
                        PacketComplete();
                    break;
                default:
                    var take = (int)Math.Min(_remaining, bytes.Length - i);
                    i += take;
                    _remaining -= take;
                    if (_remaining == 0)
                        PacketComplete();
                    break;
            }
        }
    }

    private void PacketComplete()
    {
        _part = Part.Type;
        if (_connectSeen)
            return;
        _connectSeen = true;
        connectReceived?.Invoke();
    }

    public override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default) => inner.WriteAsync(buffer, cancellationToken);

    public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) => inner.WriteAsync(buffer, offset, count, cancellationToken);

    public override void Write(byte[] buffer, int offset, int count) => inner.Write(buffer, offset, count);

    public override Task FlushAsync(CancellationToken cancellationToken) => inner.FlushAsync(cancellationToken);

    public override void Flush() => inner.Flush();

    public override bool CanRead => true;

    public override bool CanSeek => false;

    public override bool CanWrite => true;

    public override long Length => throw new NotSupportedException();

    public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

    public override void SetLength(long value) => throw new NotSupportedException();

    protected override void Dispose(bool disposing)
    {
        if (disposing)
            inner.Dispose();
        base.Dispose(disposing);
    }
}

/// <summary>The packet sizes the embedded broker reads, before and after CONNECT.</summary>
public sealed record PacketLimits(int ConnectBytes, int PacketBytes);

/// <summary>A client sent a packet the broker will not read; the connection is closed.</summary>
public sealed class MqttPacketRefusedException(string message) : IOException(message);
