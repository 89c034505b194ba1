using EdgeFleet.Agent.Storage;
using EdgeFleet.Shared.IO;
using EdgeFleet.Shared.Wire;
using LiteDB;

namespace EdgeFleet.Agent.Ota;

/// <summary>The update in progress: which manifest, how far it got, and how it ended.</summary>
public sealed record OtaJob
{
    public required string ModelId { get; init; }

    public required long Version { get; init; }

    public string? RolloutId { get; init; }

    public required string Sha256 { get; init; }

    public required OtaState State { get; init; }

    public string? Error { get; init; }

    public string? Reason { get; init; }
}

/// <summary>After activation: restarts are counted until <see cref="Until"/>; too many roll the model back.</summary>
public sealed record Probation(string ModelId, long Version, DateTimeOffset Until, IReadOnlyList<DateTimeOffset> Boots);

/// <summary>Everything the OTA state machine must remember across kill -9 and power loss.</summary>
public sealed record OtaRecord
{
    /// <summary>The trusted root envelope: the pinned one, or a verified successor.</summary>
    public byte[]? Root { get; init; }

    public byte[]? KeySet { get; init; }

    /// <summary>The last desired state received, so an update resumes after a reboot without network.</summary>
    public byte[]? Desired { get; init; }

    /// <summary>Highest version ever activated per model id: the floor for rollback protection.</summary>
    public IReadOnlyDictionary<string, long> Installed { get; init; } = new Dictionary<string, long>();

    public OtaJob? Job { get; init; }

    public Probation? Probation { get; init; }
}

/// <summary>
/// The OTA state in LiteDB (<c>{state}/ota.db</c>), one document mapped by hand (no typed mapper under
/// NativeAOT). Every save is a transaction synced to the log before it returns (<see cref="DurableLiteDb"/>):
/// a saved step survives power loss, and a save cut short by it leaves the step before.
/// </summary>
public sealed class OtaStore : IDisposable
{
    private const int CheckpointPages = 100;

    private readonly string _path;
    private readonly FileSystem _files;
    private readonly Lock _lock = new();
    private DurableLiteDb? _store;
    private ILiteCollection<BsonDocument> _state = null!;

    public OtaStore(string path)
        : this(path, FileSystem.Os)
    {
    }

    /// <summary>With its files in <paramref name="files"/> (tests simulate power cuts with it).</summary>
    internal OtaStore(string path, FileSystem files)
    {
        _path = Path.GetFullPath(path);
        _files = files;
        Directory.CreateDirectory(Path.GetDirectoryName(_path)!);
        EnsureOpen();
    }

    public OtaRecord Load()
    {
        lock (_lock)
        {
            EnsureOpen();
            return _state.FindById("state") is { } doc ? FromDocument(doc) : new OtaRecord();
        }
    }

    public void Save(OtaRecord record)
    {
        lock (_lock)
        {
            var store = EnsureOpen();
            try
            {
                store.Transact(() => _state.Upsert(ToDocument(record)));
                store.Sync();
            }
            catch (Exception)
            {
                // LiteDB's state after a failed write is unknown: the next call reopens from the files.
                store.Dispose();
                _store = null;
                throw;
            }
        }
    }

    public OtaRecord Update(Func<OtaRecord, OtaRecord> change)
    {
        lock (_lock)
        {
            var next = change(Load());
            Save(next);
            return next;
        }
    }

    private DurableLiteDb EnsureOpen()
    {
        if (_store is { } open)
            return open;
        var store = new DurableLiteDb(_path, _files, CheckpointPages);
        _state = store.Db.GetCollection("ota");
        return _store = store;
    }

    private static BsonDocument ToDocument(OtaRecord r)
    {
        var installed = new BsonDocument();
        foreach (var (id, version) in r.Installed)
            installed[id] = version;
        return new BsonDocument
        {
            ["_id"] = "state",
            ["root"] = r.Root is null ? BsonValue.Null : new BsonValue(r.Root),
            ["keySet"] = r.KeySet is null ? BsonValue.Null : new BsonValue(r.KeySet),
            ["desired"] = r.Desired is null ? BsonValue.Null : new BsonValue(r.Desired),
            ["installed"] = installed,
            ["job"] = r.Job is { } j ? new BsonDocument
            {
                ["modelId"] = j.ModelId,
                ["version"] = j.Version,
                ["rolloutId"] = j.RolloutId,
                ["sha256"] = j.Sha256,
                ["state"] = j.State.ToString(),
                ["error"] = j.Error,
                ["reason"] = j.Reason,
            } : BsonValue.Null,
            ["probation"] = r.Probation is { } p ? new BsonDocument
            {
                ["modelId"] = p.ModelId,
                ["version"] = p.Version,
                ["until"] = p.Until.ToUnixTimeMilliseconds(),
                ["boots"] = new BsonArray(p.Boots.Select(b => new BsonValue(b.ToUnixTimeMilliseconds()))),
            } : BsonValue.Null,
        };
    }

    private static OtaRecord FromDocument(BsonDocument d) => new()
    {
        Root = d["root"].IsNull ? null : d["root"].AsBinary,
        KeySet = d["keySet"].IsNull ? null : d["keySet"].AsBinary,
        Desired = d["desired"].IsNull ? null : d["desired"].AsBinary,
        Installed = d["installed"].AsDocument.ToDictionary(kv => kv.Key, kv => kv.Value.AsInt64),
        Job = d["job"].IsNull ? null : new OtaJob
        {
            ModelId = d["job"]["modelId"].AsString,
            Version = d["job"]["version"].AsInt64,
            RolloutId = d["job"]["rolloutId"].IsNull ? null : d["job"]["rolloutId"].AsString,
            Sha256 = d["job"]["sha256"].AsString,
            State = Enum.Parse<OtaState>(d["job"]["state"].AsString),
            Error = d["job"]["error"].IsNull ? null : d["job"]["error"].AsString,
            Reason = d["job"]["reason"].IsNull ? null : d["job"]["reason"].AsString,
        },
        Probation = d["probation"].IsNull ? null : new Probation(
            d["probation"]["modelId"].AsString,
            d["probation"]["version"].AsInt64,
            DateTimeOffset.FromUnixTimeMilliseconds(d["probation"]["until"].AsInt64),
            d["probation"]["boots"].AsArray.Select(b => DateTimeOffset.FromUnixTimeMilliseconds(b.AsInt64)).ToList()),
    };

    public void Dispose()
    {
        lock (_lock)
        {
            _store?.Dispose();
            _store = null;
        }
    }
}
