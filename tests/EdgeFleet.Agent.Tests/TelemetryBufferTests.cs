using EdgeFleet.Agent.Telemetry;
using EdgeFleet.Shared.Wire;

namespace EdgeFleet.Agent.Tests;

public class TelemetryBufferTests
{
    private static readonly DateTimeOffset T0 = new(2026, 11, 22, 10, 0, 0, TimeSpan.Zero);

    private static long AppendEvent(TelemetryBuffer buffer, int i) => buffer.Append(T0.AddSeconds(i), TelemetryKind.Event, message: $"e{i}");

    [Fact]
    public void Assigns_consecutive_sequence_numbers_and_returns_oldest_first()
    {
        using var dir = new TempDir();
        using var buffer = new TelemetryBuffer(dir.File("t.db"));
        for (var i = 0; i < 5; i++)
            Assert.Equal(i + 1, AppendEvent(buffer, i));
        var peek = buffer.Peek(3);
        Assert.Equal([1L, 2L, 3L], peek.Select(r => r.Seq));
        Assert.Equal("e0", peek[0].Message);
        Assert.Equal(5, buffer.Count);
    }

    [Fact]
    public void Records_leave_only_when_acknowledged_and_acks_never_move_back()
    {
        using var dir = new TempDir();
        using var buffer = new TelemetryBuffer(dir.File("t.db"));
        for (var i = 0; i < 10; i++)
            AppendEvent(buffer, i);
        Assert.Equal(4, buffer.Acknowledge(4));
        Assert.Equal(0, buffer.Acknowledge(2));
        Assert.Equal(4, buffer.AckedSeq);
        Assert.Equal(5, buffer.Peek(100)[0].Seq);
        Assert.Equal(6, buffer.Count);
    }

    [Fact]
    public void An_ack_beyond_what_was_appended_is_clamped()
    {
        using var dir = new TempDir();
        using var buffer = new TelemetryBuffer(dir.File("t.db"));
        AppendEvent(buffer, 0);
        buffer.Acknowledge(1_000);
        Assert.Equal(1, buffer.AckedSeq);
        Assert.Equal(2, AppendEvent(buffer, 1));
        Assert.Single(buffer.Peek(10));
    }

    [Fact]
    public void Sequence_and_stream_survive_reopening_even_when_drained()
    {
        using var dir = new TempDir();
        string stream;
        using (var buffer = new TelemetryBuffer(dir.File("t.db")))
        {
            for (var i = 0; i < 3; i++)
                AppendEvent(buffer, i);
            buffer.Acknowledge(3);
            stream = buffer.StreamId;
        }
        using var reopened = new TelemetryBuffer(dir.File("t.db"));
        Assert.Equal(stream, reopened.StreamId);
        Assert.Equal(3, reopened.AckedSeq);
        Assert.Equal(4, AppendEvent(reopened, 3));
    }

    [Fact]
    public void A_new_buffer_file_starts_a_new_stream()
    {
        using var dir = new TempDir();
        using var a = new TelemetryBuffer(dir.File("a.db"));
        using var b = new TelemetryBuffer(dir.File("b.db"));
        Assert.NotEqual(a.StreamId, b.StreamId);
    }

    [Fact]
    public void Concurrent_appends_get_unique_sequence_numbers()
    {
        using var dir = new TempDir();
        using var buffer = new TelemetryBuffer(dir.File("t.db"));
        var seqs = new System.Collections.Concurrent.ConcurrentBag<long>();
        Parallel.For(0, 400, i => seqs.Add(AppendEvent(buffer, i)));
        Assert.Equal(Enumerable.Range(1, 400).Select(i => (long)i), seqs.Order());
    }
}
