using LiteDB;

namespace EdgeFleet.Fleet.Storage;

/// <summary>Collections that hold a record's JSON per document (rollouts, users, drift alerts): an atomic read-change-write.</summary>
public sealed partial class LiteDbFleetStore
{
    /// <summary>
    /// Under the write gate: reads document <paramref name="id"/>, applies <paramref name="change"/> (null leaves it),
    /// keeps what <paramref name="keep"/> restores (the key) and writes it back; null when there is no such document
    /// or nothing was changed.
    /// </summary>
    private Task<(T Before, T After)?> UpdateDocumentAsync<T>(ILiteCollection<BsonDocument> collection, string id, Func<BsonDocument, T> read, Func<T, BsonDocument> write,
        Func<T, T?> change, Func<T, T> keep, CancellationToken ct) where T : class =>
        WriteAsync<(T, T)?>(() =>
        {
            if (collection.FindById(id) is not { } doc)
                return null;
            var before = read(doc);
            if (change(before) is not { } changed)
                return null;
            var after = keep(changed);
            collection.Update(write(after));
            return (before, after);
        }, ct);
}
