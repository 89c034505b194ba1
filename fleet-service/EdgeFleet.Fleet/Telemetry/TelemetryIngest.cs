using System.Threading.Channels;
using EdgeFleet.Fleet.Broker;
using EdgeFleet.Fleet.Storage;
using EdgeFleet.Shared.Wire;

namespace EdgeFleet.Fleet.Telemetry;

/// <summary>
/// Group commit for telemetry: decoded batches from all devices queue here, and one writer stores whatever
/// has gathered (up to <see cref="MaxGroupBatches"/> batches or <see cref="MaxGroupRecords"/> records) in
/// one store transaction, then sends each device its ack. Under load, a transaction's cost is shared by
/// hundreds of batches; when idle, a lone batch is stored at once. Batches of one device keep their order.
/// A failed write sends no acks: the devices keep their records and send them again.
/// </summary>
public sealed partial class TelemetryIngest(IFleetStore store, ReplyQueue replies, FleetMetrics metrics, TimeProvider time, ILogger<TelemetryIngest> log) : BackgroundService
{
    public const int MaxGroupBatches = 512;
    public const int MaxGroupRecords = 25_000;

    private readonly Channel<IncomingTelemetry> _queue = Channel.CreateBounded<IncomingTelemetry>(new BoundedChannelOptions(4 * MaxGroupBatches)
    {
        FullMode = BoundedChannelFullMode.Wait,
        SingleReader = true,
    });

    /// <summary>Queues a batch; waits while the queue is full (backpressure onto the broker connection).</summary>
    public ValueTask SubmitAsync(IncomingTelemetry batch, CancellationToken ct) => _queue.Writer.WriteAsync(batch, ct);

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var group = new List<IncomingTelemetry>(MaxGroupBatches);
        // Runs until the queue is completed at shutdown, so what was queued is still stored.
        while (await _queue.Reader.WaitToReadAsync(CancellationToken.None).ConfigureAwait(false))
        {
            group.Clear();
            var records = 0;
            while (group.Count < MaxGroupBatches && records < MaxGroupRecords && _queue.Reader.TryRead(out var next))
            {
                group.Add(next);
                records += next.Records.Count;
            }
            await StoreGroupAsync(group).ConfigureAwait(false);
        }
    }

    public override async Task StopAsync(CancellationToken cancellationToken)
    {
        _queue.Writer.TryComplete();
        await base.StopAsync(cancellationToken).ConfigureAwait(false);
    }

    private async Task StoreGroupAsync(List<IncomingTelemetry> group)
    {
        IReadOnlyList<TelemetryStoreResult> results;
        try
        {
            results = await store.StoreTelemetryAsync(group, time.GetUtcNow(), CancellationToken.None).ConfigureAwait(false);
        }
        catch (Exception e) when (e is IOException or LiteDB.LiteException or Npgsql.NpgsqlException or InvalidOperationException or TimeoutException)
        {
            Log.StoreFailed(log, group.Count, e.Message);
            return;
        }
        // Drift sketches also go to their own table, before the acks: a batch sent again (lost ack, crash) is
        // deduplicated above and its sketches replace themselves here, so each is kept exactly once.
        // Hard examples likewise go to theirs (kept once by device, stream and sequence number), for retraining.
        var sketches = group.SelectMany(g => g.Records.Where(r => r.Sketch is not null).Select(r => new Drift.StoredSketch(g.Batch.DeviceId, r.Sketch!))).ToList();
        var hard = group.SelectMany(g => g.Records.Where(r => r.HardExample is not null).Select(r => new Retraining.StoredHardExample
        {
            Id = Retraining.StoredHardExample.IdOf(g.Batch.DeviceId, g.Batch.StreamId, r.Seq),
            DeviceId = g.Batch.DeviceId,
            Ts = r.Ts,
            Example = r.HardExample!,
        })).ToList();
        // How an update ended also travels through the buffer, because the live ota/status report is lost when
        // the connection drops as it goes out: it updates the device like a live one (and a late one does not
        // undo a newer state: DeviceRecord.WithOtaStatus). A device speaks only for itself.
        var outcomes = group.SelectMany(g => g.Records.Where(r => r.Ota is not null).Select(r => r.Ota! with { DeviceId = g.Batch.DeviceId })).ToList();
        if (sketches.Count > 0 || hard.Count > 0 || outcomes.Count > 0)
        {
            try
            {
                if (sketches.Count > 0)
                    await store.UpsertSketchesAsync(sketches, CancellationToken.None).ConfigureAwait(false);
                if (hard.Count > 0)
                    await store.AddHardExamplesAsync(hard, CancellationToken.None).ConfigureAwait(false);
                foreach (var outcome in outcomes)
                    await store.RecordOtaStatusAsync(outcome, time.GetUtcNow(), CancellationToken.None).ConfigureAwait(false);
            }
            catch (Exception e) when (e is IOException or LiteDB.LiteException or Npgsql.NpgsqlException or InvalidOperationException or TimeoutException)
            {
                Log.StoreFailed(log, group.Count, e.Message);
                return;
            }
        }
        for (var i = 0; i < group.Count; i++)
        {
            var (batch, records) = (group[i].Batch, group[i].Records);
            var result = results[i];
            metrics.CountTelemetry(result.Stored, result.Duplicates);
            if (result.Skipped > 0)
                Log.Skipped(log, batch.DeviceId, result.Skipped, batch.PendingFrom);
            if (result.Conflicts > 0)
                Log.Conflicts(log, batch.DeviceId, result.Conflicts, batch.StreamId);
            var ack = new TelemetryAck
            {
                DeviceId = batch.DeviceId,
                StreamId = batch.StreamId,
                AckedSeq = result.AckedSeq,
                Stored = TelemetryAck.RangesOf(records.Select(r => r.Seq)),
                FleetTime = time.GetUtcNow(),
            };
            await replies.WriteAsync(new Reply(Topics.For(batch.DeviceId, TopicKind.TelemetryAck), WireReader.Write(ack, WireJsonContext.Default.TelemetryAck)),
                CancellationToken.None).ConfigureAwait(false);
        }
    }

    private static partial class Log
    {
        [LoggerMessage(4003, LogLevel.Warning, "Device {DeviceId} evicted {Count} telemetry records below sequence {PendingFrom} before sending them; recorded as gaps")]
        public static partial void Skipped(ILogger logger, string deviceId, long count, long pendingFrom);

        [LoggerMessage(4006, LogLevel.Error, "Device {DeviceId} sent {Count} telemetry records of stream {StreamId} again with other content; the first copies are kept")]
        public static partial void Conflicts(ILogger logger, string deviceId, int count, string streamId);

        [LoggerMessage(4007, LogLevel.Error, "Could not store {Batches} telemetry batches ({Reason}); not acknowledged, the devices will send them again")]
        public static partial void StoreFailed(ILogger logger, int batches, string reason);
    }
}
