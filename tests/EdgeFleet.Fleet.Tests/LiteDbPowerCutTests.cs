using EdgeFleet.Fleet.Storage;
using EdgeFleet.Shared.Wire;
using EdgeFleet.Tests.Common;
using Xunit.Abstractions;

namespace EdgeFleet.Fleet.Tests;

/// <summary>
/// Power cuts under the fleet's LiteDB store (<see cref="PowerCutDisk"/>): unsynced writes dropped, reordered or
/// torn. Devices send telemetry; what the store returned as stored is acknowledged to them (and they delete it).
/// After each cut the store must open, and hold every acknowledged record once, with its content; desired states
/// (written without a sync of their own) may fall back to an earlier one but never come back torn.
/// </summary>
public class LiteDbPowerCutTests(ITestOutputHelper output)
{
    private static readonly DateTimeOffset T0 = new(2026, 12, 3, 8, 0, 0, TimeSpan.Zero);

    /// <summary>Cuts per run; the issue asks for 1,000 (EDGEFLEET_POWER_CUTS overrides).</summary>
    private static int Cuts => int.TryParse(Environment.GetEnvironmentVariable("EDGEFLEET_POWER_CUTS"), out var n) ? n : 1000;

    /// <summary>Records checked per device after most cuts: well beyond what one cut's work adds.</summary>
    private const int Recent = 1_000;

    /// <summary>Cuts on one store before a fresh one.</summary>
    private const int Epoch = 250;

    private static async Task CheckAll(LiteDbFleetStore store, string[] devices, Dictionary<string, long> acked)
    {
        using (store)
        {
            foreach (var device in devices)
                Assert.Equal(acked[device], (await store.GetTelemetryAsync(device, int.MaxValue, default)).Count(r => r.Seq <= acked[device]));
        }
    }

    private static byte[] Desired(int n) => Enumerable.Repeat((byte)n, 100 + (n * 997 % 12_000)).ToArray();

    [Fact]
    public async Task Every_acknowledged_record_survives_every_power_cut_once_and_the_store_always_opens()
    {
        // The files live in the simulator; the directory is real only because the store creates it.
        var dir = Directory.CreateTempSubdirectory("edgefleet-powercut-").FullName;
        var path = Path.Combine(dir, "fleet.db");
        var random = new Random(3205);
        var disk = new PowerCutDisk();
        string[] devices = ["d1", "d2", "d3"];
        var acked = devices.ToDictionary(d => d, _ => 0L); // what the devices were told is stored (before the cut)
        long batches = 0, records = 0, desiredWrites = 0, desiredOlder = 0;
        var desiredWritten = devices.ToDictionary(d => d, _ => 0);
        for (var cut = 0; cut < Cuts; cut++)
        {
            if (cut > 0 && cut % Epoch == 0)
            {
                // A new store every few hundred cuts: the simulator copies whole files, and a file of 100,000 records makes each cut slow.
                await CheckAll(new LiteDbFleetStore(path, disk), devices, acked);
                disk = new PowerCutDisk();
                foreach (var device in devices)
                    acked[device] = 0;
            }
            LiteDbFleetStore store;
            try
            {
                store = new LiteDbFleetStore(path, disk);
            }
            catch (Exception e)
            {
                Assert.Fail($"after cut {cut} the fleet store does not open: {e.Message}");
                return;
            }
            using (store)
            {
                foreach (var device in devices)
                {
                    var watermark = (await store.GetDeviceAsync(device, default))?.AckedSeq ?? 0;
                    Assert.True(watermark >= acked[device], $"after cut {cut} {device}'s acknowledged sequence went back from {acked[device]} to {watermark}");
                    // Every record at every 25th cut and at the end; otherwise the newest (reading 50,000 records a cut is slow).
                    var whole = cut % 25 == 0;
                    var stored = whole
                        ? await store.GetTelemetryAsync(device, int.MaxValue, default)
                        : await store.GetRecentTelemetryAsync(device, Recent, default);
                    var seqs = stored.Select(r => r.Seq).ToList();
                    Assert.True(seqs.Count == seqs.Distinct().Count(), $"after cut {cut} {device} has a record stored twice");
                    var have = stored.ToDictionary(r => r.Seq, r => r.Inference?.Label);
                    for (var seq = whole ? 1L : Math.Max(1, acked[device] - (Recent / 2)); seq <= acked[device]; seq++)
                    {
                        Assert.True(have.TryGetValue(seq, out var label), $"after cut {cut} acknowledged record {seq} of {device} is lost");
                        Assert.Equal($"l{seq}", label);
                    }
                    acked[device] = watermark;
                    if (await store.GetDesiredAsync(device, default) is { } payload)
                    {
                        var n = payload[0];
                        Assert.True(payload.SequenceEqual(Desired(n)), $"after cut {cut} the desired state of {device} is torn");
                        desiredOlder += n != (byte)desiredWritten[device] ? 1 : 0;
                    }
                }

                // Devices send (each from just above what it was told is stored), operators change desired states,
                // until the power goes at a random write.
                disk.CutAfterWrites(random.Next(1, 150));
                var next = devices.ToDictionary(d => d, d => acked[d] + 1);
                while (!disk.PoweredOff)
                {
                    var device = devices[random.Next(devices.Length)];
                    if (random.Next(8) == 0)
                    {
                        desiredWritten[device] = (desiredWritten[device] + 1) % 256;
                        await store.SetDesiredAsync(device, Desired(desiredWritten[device]), default);
                        desiredWrites++;
                        continue;
                    }
                    var batch = FleetStoreContract.Records(next[device], random.Next(1, 20));
                    var result = await store.StoreTelemetryAsync(TelemetryBatchCodec.CreateBatch(device, "s", batch), batch, T0, default);
                    batches++;
                    records += batch.Count;
                    next[device] += batch.Count;
                    if (!disk.PoweredOff)
                        acked[device] = result.AckedSeq;
                }
            }
            disk = disk.Recover(random, (CutMode)(cut % 3));
        }
        await CheckAll(new LiteDbFleetStore(path, disk), devices, acked);
        Directory.Delete(dir, recursive: true);
        output.WriteLine($"{Cuts} power cuts under the fleet's LiteDB store: {batches} batches ({records} records) stored, {desiredWrites} desired "
            + $"states written ({desiredOlder} reads found an earlier one after a cut); the last store acknowledged up to {string.Join(", ", acked.Select(a => $"{a.Key} {a.Value}"))}; "
            + "0 acknowledged records lost, 0 duplicated, 0 unopenable");
    }
}
