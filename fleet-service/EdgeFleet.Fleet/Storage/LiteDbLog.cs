using System.Reflection;
using LiteDB;

namespace EdgeFleet.Fleet.Storage;

/// <summary>
/// Makes a LiteDB commit durable before the fleet acknowledges what it stored. LiteDB 5's <c>Commit</c> returns
/// once the transaction's pages are queued for its writer thread, not written: a fleet killed (or a host losing
/// power) between the commit and the write loses records it has already acknowledged, and the device has deleted
/// them by then. <see cref="Flush"/> waits for the writer's queue to empty (LiteDB's own <c>DiskWriterQueue.Wait</c>,
/// which its checkpoint uses), then the caller fsyncs the log. LiteDB has no public way to wait for its writer, so
/// the queue is reached by reflection on the pinned version (5.0.20); <see cref="For"/> checks the whole path when the store opens and
/// refuses to start with a clear reason if another LiteDB version changed it.
/// </summary>
internal sealed class LiteDbLog
{
    private const BindingFlags Instance = BindingFlags.Instance | BindingFlags.NonPublic;

    private readonly object _disk;
    private readonly FieldInfo _queueField;
    private PropertyInfo? _valueProperty;
    private MethodInfo? _wait;

    private LiteDbLog(object disk, FieldInfo queueField) => (_disk, _queueField) = (disk, queueField);

    public static LiteDbLog For(LiteDatabase db)
    {
        var engine = typeof(LiteDatabase).GetField("_engine", Instance)?.GetValue(db);
        var disk = engine?.GetType().GetField("_disk", Instance)?.GetValue(engine);
        var queue = disk?.GetType().GetField("_queue", Instance);
        if (disk is null || queue is null)
        {
            throw new InvalidOperationException(
                $"LiteDB {typeof(LiteDatabase).Assembly.GetName().Version} has no writer queue where 5.0.20 has it: commits cannot be made durable before acknowledging");
        }
        var log = new LiteDbLog(disk, queue);
        log.Flush(() => { }); // resolves (and checks) the rest of the path
        return log;
    }

    /// <summary>Returns once every committed page is in the log file and <paramref name="sync"/> (the log's fsync) has run.</summary>
    public void Flush(Action sync)
    {
        var lazy = _queueField.GetValue(_disk)!;
        _valueProperty ??= lazy.GetType().GetProperty("Value") ?? throw Changed("Lazy<DiskWriterQueue>.Value");
        var queue = _valueProperty.GetValue(lazy)!;
        _wait ??= queue.GetType().GetMethod("Wait", Type.EmptyTypes) ?? throw Changed("DiskWriterQueue.Wait()");
        try
        {
            _wait.Invoke(queue, null);
        }
        catch (TargetInvocationException e) when (e.InnerException is not null)
        {
            // The writer's own failure (a full disk): the caller must not acknowledge.
            System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(e.InnerException);
        }
        sync();
    }

    private static InvalidOperationException Changed(string what) =>
        new($"LiteDB {typeof(LiteDatabase).Assembly.GetName().Version} has no {what}: commits cannot be made durable before acknowledging");
}
