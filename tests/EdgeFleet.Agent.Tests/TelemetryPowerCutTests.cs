using EdgeFleet.Agent.Configuration;
using EdgeFleet.Agent.Telemetry;
using EdgeFleet.Shared.IO;
using EdgeFleet.Shared.Wire;
using EdgeFleet.Tests.Common;
using Xunit.Abstractions;

namespace EdgeFleet.Agent.Tests;

/// <summary>
/// Power cuts under the telemetry buffer, simulated below LiteDB (<see cref="PowerCutDisk"/>): unsynced writes
/// dropped, reordered or torn at the moment of the cut, which kill -9 never does. After each cut the buffer
/// must open, check clean, and hold every record whose append completed and the fleet had not acknowledged,
/// under the sequence number it was given and with its own content.
/// </summary>
public class TelemetryPowerCutTests(ITestOutputHelper output)
{
    /// <summary>Cuts per run; the issue asks for 1,000 (EDGEFLEET_POWER_CUTS overrides).</summary>
    private static int Cuts => int.TryParse(Environment.GetEnvironmentVariable("EDGEFLEET_POWER_CUTS"), out var n) ? n : 1000;

    private static readonly TelemetryConfig Config = new() { MinFreeDiskBytes = 0, CommitWindowSeconds = 0, MaxBufferRecords = 100_000 };

    private static TelemetryBuffer Open(TempDir dir, PowerCutDisk disk) =>
        new(dir.File("t.db"), Config, TimeProvider.System, null, disk);

    private static TelemetryRecord Record(string message, TelemetryKind kind) => new() { Ts = DateTimeOffset.UnixEpoch.AddDays(20_000), Kind = kind, Message = message };

    [Fact]
    public async Task No_acknowledged_record_is_lost_or_duplicated_across_power_cuts_that_drop_reorder_and_tear_unsynced_writes()
    {
        using var dir = new TempDir();
        var random = new Random(32);
        var disk = new PowerCutDisk();
        var durable = new Dictionary<long, string>(); // seq → message, for records whose append completed
        long fleetAcked = 0, appended = 0, failedAppends = 0, afterCut = 0, maxLastSeq = 0;
        var modes = new Dictionary<CutMode, int>();
        for (var cut = 0; cut < Cuts; cut++)
        {
            TelemetryBuffer buffer;
            try
            {
                buffer = Open(dir, disk);
            }
            catch (Exception e)
            {
                Assert.Fail($"after cut {cut} the buffer does not open: {e}");
                return;
            }
            try
            {
                Assert.Empty(buffer.Check());
                Assert.True(buffer.LastSeq >= maxLastSeq || durable.Keys.All(s => s <= buffer.LastSeq),
                    $"after cut {cut} the last sequence went back to {buffer.LastSeq} below an acknowledged record");
                var batch = buffer.TakeBatch(int.MaxValue, long.MaxValue);
                var present = batch?.Records.ToDictionary(r => r.Seq, r => System.Text.Json.JsonSerializer.Deserialize(r.Body.Span, WireJsonContext.Default.TelemetryRecord)!.Message!) ?? [];
                foreach (var (seq, message) in durable)
                {
                    if (seq <= fleetAcked)
                        continue;
                    Assert.True(present.TryGetValue(seq, out var found), $"after cut {cut}: acknowledged record {seq} ({message}) is lost");
                    Assert.Equal(message, found);
                }
                foreach (var (seq, message) in present)
                {
                    if (durable.TryGetValue(seq, out var expected))
                        Assert.Equal(expected, message);
                }
                maxLastSeq = Math.Max(maxLastSeq, buffer.LastSeq);

                // A burst of work with the power going at a random write: appends from several producers
                // (alarms, events, inference), and acknowledgements of what the "fleet" stored.
                disk.CutAfterWrites(random.Next(1, 60));
                var tasks = new List<Task>();
                for (var i = 0; i < random.Next(1, 40) && !disk.PoweredOff; i++)
                {
                    var kind = (i % 3) switch { 0 => TelemetryKind.Alarm, 1 => TelemetryKind.Event, _ => TelemetryKind.Inference };
                    var message = $"c{cut}-r{i}";
                    appended++;
                    tasks.Add(Task.Run(async () =>
                    {
                        try
                        {
                            var seq = await buffer.AppendAsync(Record(message, kind));
                            // Completed with the power still on: its fsync came before the cut.
                            if (!disk.PoweredOff)
                            {
                                lock (durable)
                                    durable.Add(seq, message);
                            }
                            else
                            {
                                Interlocked.Increment(ref afterCut);
                            }
                        }
                        catch (TelemetryBufferException)
                        {
                            Interlocked.Increment(ref failedAppends);
                        }
                    }));
                    if (random.Next(4) == 0 && buffer.LastSeq > fleetAcked)
                    {
                        try
                        {
                            var upTo = fleetAcked + random.Next(1, (int)Math.Min(20, buffer.LastSeq - fleetAcked) + 1);
                            buffer.Acknowledge(upTo);
                            fleetAcked = Math.Max(fleetAcked, Math.Min(upTo, buffer.LastSeq));
                        }
                        catch (TelemetryBufferException)
                        {
                            // Not written: the records are sent again.
                        }
                    }
                }
                await Task.WhenAll(tasks).WaitAsync(TimeSpan.FromSeconds(60));
                disk.CutNow();
            }
            finally
            {
                buffer.Dispose();
            }
            var mode = (CutMode)(cut % 3);
            modes[mode] = modes.GetValueOrDefault(mode) + 1;
            disk = disk.Recover(random, mode);
        }

        output.WriteLine($"{Cuts} power cuts ({string.Join(", ", modes.Select(m => $"{m.Value} {m.Key}"))}): {appended} appends, "
            + $"{durable.Count} acknowledged before their cut, {afterCut} completed after it (no proof), {failedAppends} refused, fleet acknowledged up to {fleetAcked}; "
            + "0 acknowledged records lost, 0 duplicated, 0 unopenable");
    }

    [Fact]
    public async Task A_transaction_is_confirmed_on_disk_only_after_its_pages_are_synced()
    {
        using var dir = new TempDir();
        var disk = new PowerCutDisk { Tracing = true };
        using (var buffer = Open(dir, disk))
        {
            for (var i = 0; i < 20; i++)
                await buffer.AppendAsync(Record($"r{i}", TelemetryKind.Alarm));
            buffer.Acknowledge(10);
            await buffer.FlushAsync();
        }
        var log = disk.Trace.Where(t => t.File == "t-log.db").ToList();
        var confirms = 0;
        for (var i = 0; i < log.Count; i++)
        {
            var (_, op, position, length, confirmed) = log[i];
            if (op == "write" && length == DurableFileStream.PageSize)
                Assert.True(confirmed == 0, $"log page at {position} was written confirmed in one go");
            if (op == "write" && length == 1)
            {
                Assert.Equal(DurableFileStream.ConfirmedOffset, position % DurableFileStream.PageSize);
                Assert.Equal("sync", log[i - 1].Op);
                confirms++;
            }
        }
        Assert.True(confirms >= 20, $"{confirms} confirmed transactions for 20 commits");
    }
}
