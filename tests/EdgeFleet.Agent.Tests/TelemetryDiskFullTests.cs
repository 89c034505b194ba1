using System.Diagnostics;
using EdgeFleet.Agent.Configuration;
using EdgeFleet.Agent.Telemetry;
using EdgeFleet.Shared.Wire;

namespace EdgeFleet.Agent.Tests;

/// <summary>A real small file system (tmpfs, mounted by the test as root) that the test fills up.</summary>
public sealed class SmallDisk : IDisposable
{
    public SmallDisk(int megabytes)
    {
        Path = Directory.CreateTempSubdirectory("edgefleet-smalldisk-").FullName;
        Run("mount", $"-t tmpfs -o size={megabytes}m edgefleet-test {Path}");
    }

    public string Path { get; }

    public string File(string name) => System.IO.Path.Combine(Path, name);

    /// <summary>Writes a filler file until the disk has about <paramref name="leaveBytes"/> free.</summary>
    public void Fill(long leaveBytes)
    {
        using var filler = new FileStream(File("filler"), FileMode.Append);
        var chunk = new byte[4096];
        try
        {
            while (new DriveInfo(Path).AvailableFreeSpace > leaveBytes)
                filler.Write(chunk);
            filler.Flush();
        }
        catch (IOException)
        {
            // The disk is full: exactly what the caller asked for when leaveBytes is 0.
        }
    }

    public void Free() => System.IO.File.Delete(File("filler"));

    public void Dispose()
    {
        Run("umount", $"-l {Path}");
        Directory.Delete(Path);
    }

    private static void Run(string command, string args)
    {
        using var p = Process.Start(new ProcessStartInfo(command, args) { RedirectStandardError = true })!;
        p.WaitForExit();
        if (p.ExitCode != 0)
            throw new InvalidOperationException($"{command} {args} failed (the disk-full tests need root to mount a tmpfs): {p.StandardError.ReadToEnd()}");
    }
}

public class TelemetryDiskFullTests
{
    private static Task<long> Event(TelemetryBuffer buffer, int i) =>
        buffer.AppendAsync(new TelemetryRecord { Ts = DateTimeOffset.UtcNow, Kind = TelemetryKind.Event, Message = $"event {i} " + new string('x', 200) });

    [Fact]
    public async Task Below_the_reserve_appends_fail_clearly_and_succeed_again_when_space_returns()
    {
        using var disk = new SmallDisk(8);
        using var buffer = new TelemetryBuffer(disk.File("t.db"), new TelemetryConfig { CommitWindowSeconds = 0, MinFreeDiskBytes = 1024 * 1024 }, TimeProvider.System);
        for (var i = 0; i < 10; i++)
            await Event(buffer, i);

        disk.Fill(leaveBytes: 512 * 1024);
        var refused = await Assert.ThrowsAsync<TelemetryBufferException>(() => Event(buffer, 10));
        Assert.Equal(TelemetryBufferError.DiskFull, refused.Code);
        Assert.Contains("disk full", refused.Message, StringComparison.Ordinal);
        await Assert.ThrowsAsync<TelemetryBufferException>(() => Event(buffer, 11));
        Assert.Equal(10, buffer.Count);

        disk.Free();
        Assert.Equal(11, await Event(buffer, 12));
        // The refusal is reported as an alarm right behind the first record accepted again.
        await WaitForAsync(() => buffer.Count == 12);
        var alarm = System.Text.Json.JsonSerializer.Deserialize(
            TelemetryBatchCodec.Encode(buffer.TakeBatch(1, long.MaxValue, TelemetryPriority.Critical)!.Records, TelemetryBatchCodec.Identity),
            WireJsonContext.Default.ListTelemetryRecord)!.Single();
        Assert.Equal(TelemetryKind.Alarm, alarm.Kind);
        Assert.Contains("refused 2 records", alarm.Message, StringComparison.Ordinal);
        Assert.Empty(buffer.Check());
    }

    [Fact]
    public async Task A_disk_that_fills_under_litedb_itself_loses_no_accepted_record()
    {
        using var disk = new SmallDisk(8);
        var accepted = new List<long>();
        using (var buffer = new TelemetryBuffer(disk.File("t.db"), new TelemetryConfig { CommitWindowSeconds = 0, MinFreeDiskBytes = 0 }, TimeProvider.System))
        {
            for (var i = 0; i < 20; i++)
                accepted.Add(await Event(buffer, i));
            disk.Fill(leaveBytes: 0);
            var failures = 0;
            for (var i = 20; i < 400 && failures < 20; i++)
            {
                try
                {
                    accepted.Add(await Event(buffer, i));
                }
                catch (TelemetryBufferException e)
                {
                    Assert.True(e.Code is TelemetryBufferError.DiskFull or TelemetryBufferError.Unavailable, e.Code.ToString());
                    failures++;
                }
            }
            Assert.True(failures > 0, "the full disk never made an append fail");

            disk.Free();
            accepted.Add(await Event(buffer, 1000));
            Assert.Empty(buffer.Check());
        }
        using var reopened = new TelemetryBuffer(disk.File("t.db"), new TelemetryConfig { CommitWindowSeconds = 0, MinFreeDiskBytes = 0 }, TimeProvider.System);
        var held = TelemetryBatchCodec.Encode(reopened.TakeBatch(1000, long.MaxValue)!.Records, TelemetryBatchCodec.Identity);
        var seqs = System.Text.Json.JsonSerializer.Deserialize(held, WireJsonContext.Default.ListTelemetryRecord)!.Select(r => r.Seq).ToHashSet();
        Assert.All(accepted, seq => Assert.Contains(seq, seqs));
        Assert.Equal(accepted.Count, accepted.Distinct().Count());
        Assert.Empty(reopened.Check());
    }

    private static async Task WaitForAsync(Func<bool> condition)
    {
        for (var i = 0; i < 100 && !condition(); i++)
            await Task.Delay(50);
        Assert.True(condition());
    }
}
