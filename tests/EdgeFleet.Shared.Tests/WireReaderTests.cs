using System.Text;
using EdgeFleet.Shared.Wire;

namespace EdgeFleet.Shared.Tests;

public class WireReaderTests
{
    private static readonly DateTimeOffset T0 = new(2026, 11, 22, 10, 0, 0, TimeSpan.Zero);

    private static TelemetryBatch Batch(long first, int count) => new()
    {
        DeviceId = "pump-01",
        StreamId = "s1",
        FirstSeq = first,
        LastSeq = first + count - 1,
        Records = Enumerable.Range(0, count).Select(i => new TelemetryRecord
        {
            Seq = first + i,
            Ts = T0.AddSeconds(i),
            Kind = TelemetryKind.Inference,
            Inference = new InferenceSample { Model = "m", Version = "1", Label = "normal", Confidence = 0.9f, LatencyMicros = 120 },
        }).ToList(),
    };

    [Fact]
    public void Every_message_round_trips_through_the_generated_serializer()
    {
        var hello = new HelloMessage { DeviceId = "pump-01", AgentVersion = "0.1.0", HardwareProfile = "x86-64-generic", BootId = "b1", StartedAt = T0, Models = [new ModelRef { Name = "m", Version = "1", Sha256 = new string('a', 64) }] };
        var state = new ReportedState { DeviceId = "pump-01", Active = new ModelRef { Name = "m", Version = "1" }, Ota = OtaState.Staged, UpdatedAt = T0 };
        var ack = new TelemetryAck { DeviceId = "pump-01", StreamId = "s1", AckedSeq = 42 };
        var batch = Batch(1, 3);

        var helloBack = WireReader.Read(WireReader.Write(hello, WireJsonContext.Default.HelloMessage), WireJsonContext.Default.HelloMessage);
        var stateBack = WireReader.Read(WireReader.Write(state, WireJsonContext.Default.ReportedState), WireJsonContext.Default.ReportedState);
        var ackBack = WireReader.Read(WireReader.Write(ack, WireJsonContext.Default.TelemetryAck), WireJsonContext.Default.TelemetryAck);
        var batchBack = WireReader.Read(WireReader.Write(batch, WireJsonContext.Default.TelemetryBatch), WireJsonContext.Default.TelemetryBatch);

        Assert.True(helloBack.Ok, helloBack.Reason);
        Assert.Equal(hello.Models[0], helloBack.Message!.Models[0]);
        Assert.Equal(hello with { Models = helloBack.Message.Models }, helloBack.Message);
        Assert.Equal(state, stateBack.Message);
        Assert.Equal(ack, ackBack.Message);
        Assert.True(batchBack.Ok, batchBack.Reason);
        Assert.Equal(batch.Records, batchBack.Message!.Records);
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

    [Theory]
    [InlineData(0, 1, "invalid")]
    [InlineData(5, 1, null)]
    public void Checks_batch_sequence_numbers(long first, int count, string? reasonPart)
    {
        var result = WireReader.Read(WireReader.Write(Batch(first, count), WireJsonContext.Default.TelemetryBatch), WireJsonContext.Default.TelemetryBatch);
        Assert.Equal(reasonPart is null, result.Ok);
        if (reasonPart is not null)
            Assert.Contains(reasonPart, result.Reason, StringComparison.Ordinal);
    }

    [Fact]
    public void Rejects_batches_whose_records_do_not_match_their_range()
    {
        var gap = Batch(1, 3) with { LastSeq = 4 };
        var shuffled = Batch(1, 3);
        shuffled = shuffled with { Records = [shuffled.Records[1], shuffled.Records[0], shuffled.Records[2]] };
        var missingBody = Batch(1, 1) with { Records = [Batch(1, 1).Records[0] with { Inference = null }] };
        var badConfidence = Batch(1, 1) with { Records = [Batch(1, 1).Records[0] with { Inference = Batch(1, 1).Records[0].Inference! with { Confidence = 1.5f } }] };
        var empty = Batch(1, 1) with { Records = [], LastSeq = 0 };

        foreach (var batch in new[] { gap, shuffled, missingBody, badConfidence, empty })
        {
            var result = WireReader.Read(WireReader.Write(batch, WireJsonContext.Default.TelemetryBatch), WireJsonContext.Default.TelemetryBatch);
            Assert.Equal(WireError.Invalid, result.Error);
        }
    }

    [Fact]
    public void Rejects_unknown_record_kinds()
    {
        var json = Encoding.UTF8.GetString(WireReader.Write(Batch(1, 1), WireJsonContext.Default.TelemetryBatch)).Replace("\"Inference\"", "\"Teleportation\"", StringComparison.Ordinal);
        Assert.Equal(WireError.Malformed, WireReader.Read(Encoding.UTF8.GetBytes(json), WireJsonContext.Default.TelemetryBatch).Error);
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
