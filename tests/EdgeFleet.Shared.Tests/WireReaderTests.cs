using System.Text;
using EdgeFleet.Shared.Wire;

namespace EdgeFleet.Shared.Tests;

public class WireReaderTests
{
    private static readonly DateTimeOffset T0 = new(2026, 11, 22, 10, 0, 0, TimeSpan.Zero);

    private static List<TelemetryRecord> Records(long first, int count) => Enumerable.Range(0, count).Select(i => new TelemetryRecord
    {
        Seq = first + i,
        Ts = T0.AddSeconds(i),
        Kind = TelemetryKind.Inference,
        Inference = new InferenceSample { Model = "m", Version = "1", Label = "normal", Confidence = 0.9f, LatencyMicros = 120 },
    }).ToList();

    private static TelemetryBatch Batch(long first, int count) => TelemetryBatchCodec.CreateBatch("pump-01", "s1", Records(first, count));

    [Fact]
    public void Every_message_round_trips_through_the_generated_serializer()
    {
        var hello = new HelloMessage { DeviceId = "pump-01", AgentVersion = "0.1.0", HardwareProfile = "x86-64-generic", BootId = "b1", StartedAt = T0, Models = [new ModelRef { Name = "m", Version = "1", Sha256 = new string('a', 64) }] };
        var state = new ReportedState { DeviceId = "pump-01", Active = new ModelRef { Name = "m", Version = "1" }, Ota = OtaState.Staged, UpdatedAt = T0 };
        var ack = new TelemetryAck { DeviceId = "pump-01", StreamId = "s1", AckedSeq = 42, Stored = [new SeqRange(44, 50)] };
        var batch = Batch(1, 3);

        var helloBack = WireReader.Read(WireReader.Write(hello, WireJsonContext.Default.HelloMessage), WireJsonContext.Default.HelloMessage);
        var stateBack = WireReader.Read(WireReader.Write(state, WireJsonContext.Default.ReportedState), WireJsonContext.Default.ReportedState);
        var ackBack = WireReader.Read(WireReader.Write(ack, WireJsonContext.Default.TelemetryAck), WireJsonContext.Default.TelemetryAck);
        var batchBack = WireReader.Read(WireReader.Write(batch, WireJsonContext.Default.TelemetryBatch), WireJsonContext.Default.TelemetryBatch);

        Assert.True(helloBack.Ok, helloBack.Reason);
        Assert.Equal(hello.Models[0], helloBack.Message!.Models[0]);
        Assert.Equal(hello with { Models = helloBack.Message.Models }, helloBack.Message);
        Assert.Equal(state, stateBack.Message);
        Assert.Equal(ack with { Stored = ackBack.Message!.Stored }, ackBack.Message);
        Assert.Equal(ack.Stored, ackBack.Message.Stored);
        Assert.True(batchBack.Ok, batchBack.Reason);
        var records = TelemetryBatchCodec.Decode(batchBack.Message!);
        Assert.True(records.Ok, records.Reason);
        Assert.Equal(Records(1, 3), records.Message);
    }

    [Fact]
    public void Enums_travel_as_names()
    {
        var json = Encoding.UTF8.GetString(WireReader.Write(new ReportedState { DeviceId = "d", Ota = OtaState.RolledBack, UpdatedAt = T0 }, WireJsonContext.Default.ReportedState));
        Assert.Contains("\"ota\":\"rolled-back\"", json);
        Assert.Contains("\"v\":1", json);
    }

    public static TheoryData<string, WireError> BadHellos => new()
    {
        { "", WireError.Empty },
        { "{", WireError.Malformed },
        { "not json at all", WireError.Malformed },
        { "[]", WireError.Malformed },
        { "null", WireError.Malformed },
        { """{"v":1,"deviceId":"d1","agentVersion":"1","hardwareProfile":"x","bootId":"b","startedAt":"2026-11-22T10:00:00Z""", WireError.Malformed },
        { """{"v":2,"deviceId":"d1","agentVersion":"1","hardwareProfile":"x","bootId":"b","startedAt":"2026-11-22T10:00:00Z"}""", WireError.UnsupportedVersion },
        { """{"v":2,"future":{"shape":"unknown"}}""", WireError.UnsupportedVersion },
        { """{"deviceId":"d1","agentVersion":"1","hardwareProfile":"x","bootId":"b","startedAt":"2026-11-22T10:00:00Z"}""", WireError.Malformed },
        { """{"v":1,"deviceId":"d1","hardwareProfile":"x","bootId":"b","startedAt":"2026-11-22T10:00:00Z"}""", WireError.Malformed },
        { """{"v":1,"deviceId":"d1","agentVersion":null,"hardwareProfile":"x","bootId":"b","startedAt":"2026-11-22T10:00:00Z"}""", WireError.Malformed },
        { """{"v":1,"deviceId":"d1","agentVersion":"1","hardwareProfile":"x","bootId":"b","startedAt":"yesterday"}""", WireError.Malformed },
        { """{"v":1,"deviceId":"../etc","agentVersion":"1","hardwareProfile":"x","bootId":"b","startedAt":"2026-11-22T10:00:00Z"}""", WireError.Invalid },
        { """{"v":1,"deviceId":"d1","agentVersion":"","hardwareProfile":"x","bootId":"b","startedAt":"2026-11-22T10:00:00Z"}""", WireError.Invalid },
        { """{"v":1,"deviceId":"d1","agentVersion":"1","hardwareProfile":"<script>","bootId":"b","startedAt":"2026-11-22T10:00:00Z"}""", WireError.Invalid },
        { """{"v":1,"deviceId":"d1","agentVersion":"1","hardwareProfile":"Jetson","bootId":"b","startedAt":"2026-11-22T10:00:00Z"}""", WireError.Invalid },
        { """{"v":1,"deviceId":"d1","agentVersion":"1","hardwareProfile":"x","bootId":"b","startedAt":"2026-11-22T10:00:00Z","models":[null]}""", WireError.Invalid },
        { """{"v":1,"deviceId":"d1","agentVersion":"1","hardwareProfile":"x","bootId":"b","startedAt":"2026-11-22T10:00:00Z","models":[{"name":"m","version":"1","sha256":"xyz"}]}""", WireError.Invalid },
    };

    [Theory]
    [MemberData(nameof(BadHellos))]
    public void Rejects_bad_hello_with_a_reason(string payload, WireError expected)
    {
        var result = WireReader.Read(Encoding.UTF8.GetBytes(payload), WireJsonContext.Default.HelloMessage);
        Assert.False(result.Ok);
        Assert.Equal(expected, result.Error);
        Assert.False(string.IsNullOrWhiteSpace(result.Reason));
        Assert.DoesNotContain('\n', result.Reason);
    }

    [Fact]
    public void Rejects_oversized_payload_before_parsing()
    {
        var payload = new byte[Protocol.MaxPayloadBytes + 1];
        var result = WireReader.Read(payload, WireJsonContext.Default.TelemetryBatch);
        Assert.Equal(WireError.TooLarge, result.Error);
    }

    [Fact]
    public void Rejects_deeply_nested_payload()
    {
        var payload = Encoding.UTF8.GetBytes("{\"v\":1,\"x\":" + new string('[', 10_000) + new string(']', 10_000) + "}");
        Assert.Equal(WireError.Malformed, WireReader.Read(payload, WireJsonContext.Default.HelloMessage).Error);
    }

    [Fact]
    public void Every_truncation_of_a_valid_batch_is_rejected_without_throwing()
    {
        var bytes = WireReader.Write(Batch(1, 5), WireJsonContext.Default.TelemetryBatch);
        for (var length = 0; length < bytes.Length; length++)
        {
            var result = WireReader.Read(bytes.AsSpan(0, length), WireJsonContext.Default.TelemetryBatch);
            Assert.False(result.Ok, $"a batch cut at {length} bytes was accepted");
        }
    }

    [Fact]
    public void Rejects_a_message_whose_device_id_differs_from_its_topic()
    {
        var bytes = WireReader.Write(Batch(1, 1), WireJsonContext.Default.TelemetryBatch);
        var result = WireReader.Read(bytes, WireJsonContext.Default.TelemetryBatch, topicDeviceId: "pump-02");
        Assert.Equal(WireError.DeviceMismatch, result.Error);
    }

    [Fact]
    public void Checks_the_batch_header()
    {
        var good = Batch(5, 2);
        var cases = new[]
        {
            good with { FirstSeq = 0 },
            good with { LastSeq = 5 },
            good with { Count = 0 },
            good with { Count = Protocol.MaxRecordsPerBatch + 1 },
            good with { PendingFrom = 6 },
            good with { PendingFrom = 0 },
            good with { Encoding = "gzip" },
            good with { Records = [] },
            // Near 2^63 the fleet's gap counts overflowed (skippedRecords 9.2e18, then negative).
            good with { FirstSeq = long.MaxValue - 1, LastSeq = long.MaxValue, PendingFrom = 1 },
            good with { FirstSeq = Protocol.MaxSequence, LastSeq = Protocol.MaxSequence + 1, PendingFrom = 1 },
        };
        Assert.True(WireReader.Read(WireReader.Write(good, WireJsonContext.Default.TelemetryBatch), WireJsonContext.Default.TelemetryBatch).Ok);
        foreach (var batch in cases)
            Assert.Equal(WireError.Invalid, WireReader.Read(WireReader.Write(batch, WireJsonContext.Default.TelemetryBatch), WireJsonContext.Default.TelemetryBatch).Error);
    }

    [Fact]
    public void Rejects_records_that_do_not_match_their_batch()
    {
        var records = Records(1, 3);
        var withRecords = (IReadOnlyList<TelemetryRecord> r, string encoding) => Batch(1, 3) with
        {
            Encoding = encoding,
            Records = TelemetryBatchCodec.Encode(r.Select(x => (x.Seq, (ReadOnlyMemory<byte>)TelemetryBatchCodec.Body(x))).ToList(), encoding),
        };
        var cases = new[]
        {
            withRecords([records[1], records[0], records[2]], TelemetryBatchCodec.Brotli),
            withRecords([records[0], records[0], records[2]], TelemetryBatchCodec.Identity),
            withRecords(records.Take(2).ToList(), TelemetryBatchCodec.Brotli),
            withRecords([records[0], records[1], records[2] with { Inference = null }], TelemetryBatchCodec.Brotli),
            withRecords([records[0], records[1], records[2] with { Inference = records[2].Inference! with { Confidence = 1.5f } }], TelemetryBatchCodec.Brotli),
            withRecords([records[0], records[1], records[2] with { Seq = 4 }], TelemetryBatchCodec.Identity),
        };
        foreach (var batch in cases)
        {
            var read = WireReader.Read(WireReader.Write(batch, WireJsonContext.Default.TelemetryBatch), WireJsonContext.Default.TelemetryBatch);
            Assert.True(read.Ok, read.Reason);
            var decoded = TelemetryBatchCodec.Decode(read.Message!);
            Assert.Equal(WireError.Invalid, decoded.Error);
            Assert.False(string.IsNullOrWhiteSpace(decoded.Reason));
        }
    }

    [Fact]
    public void Rejects_garbage_truncated_and_explosive_compressed_records()
    {
        var good = Batch(1, 3);
        var truncated = good with { Records = good.Records[..^3] };
        var garbage = good with { Records = [1, 2, 3, 4, 5] };
        var notJson = good with { Encoding = TelemetryBatchCodec.Identity, Records = "[{\"seq\":1,"u8.ToArray() };
        // 8 MiB of spaces compresses to a few bytes and would expand past the limit.
        var bomb = new byte[System.IO.Compression.BrotliEncoder.GetMaxCompressedLength(8 << 20)];
        System.IO.Compression.BrotliEncoder.TryCompress(Enumerable.Repeat((byte)' ', 8 << 20).ToArray(), bomb, out var written, 11, 24);
        var explosive = good with { Records = bomb[..written] };

        Assert.Equal(WireError.Malformed, TelemetryBatchCodec.Decode(truncated).Error);
        Assert.Equal(WireError.Malformed, TelemetryBatchCodec.Decode(garbage).Error);
        Assert.Equal(WireError.Malformed, TelemetryBatchCodec.Decode(notJson).Error);
        Assert.Equal(WireError.TooLarge, TelemetryBatchCodec.Decode(explosive).Error);
    }

    [Fact]
    public void Compression_shrinks_a_typical_batch_several_times()
    {
        var records = Records(1, 200);
        var plain = TelemetryBatchCodec.Encode(records.Select(r => (r.Seq, (ReadOnlyMemory<byte>)TelemetryBatchCodec.Body(r))).ToList(), TelemetryBatchCodec.Identity);
        var compressed = TelemetryBatchCodec.Encode(records.Select(r => (r.Seq, (ReadOnlyMemory<byte>)TelemetryBatchCodec.Body(r))).ToList());
        Assert.True(compressed.Length * 5 < plain.Length, $"{plain.Length} bytes compressed to {compressed.Length}");
    }

    [Fact]
    public void Ack_ranges_collapse_consecutive_numbers()
    {
        Assert.Equal([new SeqRange(1, 3), new SeqRange(5, 5), new SeqRange(7, 8)], TelemetryAck.RangesOf([1, 2, 3, 5, 7, 8]));
        Assert.Empty(TelemetryAck.RangesOf([]));
        var bad = new TelemetryAck { DeviceId = "d1", StreamId = "s", AckedSeq = 1, Stored = [new SeqRange(5, 4)] };
        Assert.Equal(WireError.Invalid, WireReader.Read(WireReader.Write(bad, WireJsonContext.Default.TelemetryAck), WireJsonContext.Default.TelemetryAck).Error);
    }

    [Fact]
    public void Rejects_unknown_record_kinds()
    {
        var json = Encoding.UTF8.GetString(TelemetryBatchCodec.Encode([(1, TelemetryBatchCodec.Body(Records(1, 1)[0]))], TelemetryBatchCodec.Identity))
            .Replace("\"inference\",", "\"teleportation\",", StringComparison.Ordinal);
        var batch = Batch(1, 1) with { Encoding = TelemetryBatchCodec.Identity, Records = Encoding.UTF8.GetBytes(json) };
        Assert.Equal(WireError.Malformed, TelemetryBatchCodec.Decode(batch).Error);
    }

    [Fact]
    public void Ignores_unknown_fields_for_forward_compatibility()
    {
        var json = """{"v":1,"deviceId":"d1","streamId":"s","ackedSeq":3,"addedInV1_1":true}""";
        Assert.True(WireReader.Read(Encoding.UTF8.GetBytes(json), WireJsonContext.Default.TelemetryAck).Ok);
    }

    [Fact]
    public void Random_bytes_never_throw()
    {
        var random = new Random(7);
        for (var i = 0; i < 2000; i++)
        {
            var bytes = new byte[random.Next(0, 300)];
            random.NextBytes(bytes);
            Assert.False(WireReader.Read(bytes, WireJsonContext.Default.TelemetryBatch).Ok);
        }
    }
}
