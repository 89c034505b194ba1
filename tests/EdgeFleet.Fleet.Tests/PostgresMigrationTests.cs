using EdgeFleet.TestServers;
using EdgeFleet.Fleet.Storage;
using EdgeFleet.Shared.Wire;
using Npgsql;

namespace EdgeFleet.Fleet.Tests;

[Collection(PostgresCollection.Name)]
public sealed class PostgresMigrationTests(PostgresServer server)
{
    private static readonly int Latest = PostgresMigrations.All[^1].Version;

    [Fact]
    public async Task An_empty_database_is_migrated_to_the_latest_schema_once_even_by_instances_starting_together()
    {
        var connection = server.CreateDatabase();
        var stores = await Task.WhenAll(Enumerable.Range(0, 4).Select(_ => PostgresFleetStore.OpenAsync(connection, default)));
        foreach (var store in stores)
            store.Dispose();
        await using var db = NpgsqlDataSource.Create(connection);
        Assert.Equal(Latest, await PostgresMigrations.CurrentAsync(db, default));
        await using var count = db.CreateCommand("select count(*) from schema_migrations");
        Assert.Equal((long)PostgresMigrations.All.Count, await count.ExecuteScalarAsync());
    }

    [Fact]
    public async Task A_database_with_one_row_per_telemetry_record_keeps_its_data_through_the_migrations()
    {
        var connection = server.CreateDatabase();
        await using (var db = NpgsqlDataSource.Create(connection))
        {
            Assert.Equal([1, 2], await PostgresMigrations.ApplyAsync(db, default, upTo: 2));
            // Rows as the previous schema held them: one row per record (5 stored above a hole at 4), no tags,
            // no enrollment fields, no ledger.
            await using var insert = db.CreateCommand("""
                insert into devices (id, doc) values ('old-1', '{"id":"old-1","firstSeen":"2026-11-01T00:00:00+00:00","lastSeen":"2026-11-02T00:00:00+00:00","ackedSeq":3,"telemetryRecords":3,"ota":"idle","streamId":"s"}');
                insert into telemetry (device, stream, seq, ts, kind, body) values
                  ('old-1', 's', 1, '2026-11-01T00:00:01Z', 'Event', '{"seq":1,"ts":"2026-11-01T00:00:01+00:00","kind":"event","message":"a"}'),
                  ('old-1', 's', 2, '2026-11-01T00:00:02Z', 'Event', '{"seq":2,"ts":"2026-11-01T00:00:02+00:00","kind":"event","message":"b"}'),
                  ('old-1', 's', 3, '2026-11-01T00:00:03Z', 'Event', '{"seq":3,"ts":"2026-11-01T00:00:03+00:00","kind":"event","message":"c"}'),
                  ('old-1', 's', 5, '2026-11-01T00:00:05Z', 'Event', '{"seq":5,"ts":"2026-11-01T00:00:05+00:00","kind":"event","message":"e"}');
                """);
            await insert.ExecuteNonQueryAsync();
        }
        using var store = await PostgresFleetStore.OpenAsync(connection, default);
        var device = (await store.GetDeviceAsync("old-1", default))!;
        Assert.Equal(3, device.AckedSeq);
        Assert.Empty(device.Tags);
        Assert.Null(device.EnrolledAt);
        Assert.Equal(["a", "b", "c", "e"], (await store.GetTelemetryAsync("old-1", 10, default)).Select(r => r.Message));
        Assert.Equal([new SeqRange(5, 5)], device.StoredAboveAck);
        // It carries on where it was: 4 fills the hole, 3 and 5 are redeliveries, the watermark jumps to 5.
        var records = new List<TelemetryRecord>
        {
            new() { Seq = 3, Ts = DateTimeOffset.Parse("2026-11-01T00:00:03Z", System.Globalization.CultureInfo.InvariantCulture), Kind = TelemetryKind.Event, Message = "c" },
            new() { Seq = 4, Ts = DateTimeOffset.Parse("2026-11-01T00:00:04Z", System.Globalization.CultureInfo.InvariantCulture), Kind = TelemetryKind.Event, Message = "d" },
            new() { Seq = 5, Ts = DateTimeOffset.Parse("2026-11-01T00:00:05Z", System.Globalization.CultureInfo.InvariantCulture), Kind = TelemetryKind.Event, Message = "e" },
        };
        var result = await store.StoreTelemetryAsync(TelemetryBatchCodec.CreateBatch("old-1", "s", records), records, DateTimeOffset.UtcNow, default);
        Assert.Equal(new TelemetryStoreResult(5, 1, 2, 0, 0), result);
        Assert.Equal(["a", "b", "c", "d", "e"], (await store.GetTelemetryAsync("old-1", 10, default)).Select(r => r.Message));
        Assert.Empty(await store.ListApiKeysAsync(default)); // the new tables exist
    }

    [Fact]
    public async Task A_database_on_the_previous_schema_is_migrated_and_keeps_its_devices()
    {
        var connection = server.CreateDatabase();
        await using (var db = NpgsqlDataSource.Create(connection))
        {
            Assert.Equal([.. Enumerable.Range(1, Latest - 1)], await PostgresMigrations.ApplyAsync(db, default, upTo: Latest - 1));
            await using var insert = db.CreateCommand("""
                insert into devices (id, doc) values ('old-2', '{"id":"old-2","firstSeen":"2026-11-01T00:00:00+00:00","lastSeen":"2026-11-02T00:00:00+00:00","tags":{"site":"north"},"ota":"idle"}');
                """);
            await insert.ExecuteNonQueryAsync();
        }
        using var store = await PostgresFleetStore.OpenAsync(connection, default);
        await using (var db = NpgsqlDataSource.Create(connection))
            Assert.Equal(Latest, await PostgresMigrations.CurrentAsync(db, default));
        Assert.Equal("north", (await store.GetDeviceAsync("old-2", default))!.Tags["site"]);
        Assert.Empty(await store.ListGroupsAsync(default)); // the new table exists
    }

    [Fact]
    public async Task A_schema_newer_than_this_build_is_refused_with_its_reason()
    {
        var connection = server.CreateDatabase();
        (await PostgresFleetStore.OpenAsync(connection, default)).Dispose();
        await using (var db = NpgsqlDataSource.Create(connection))
        await using (var future = db.CreateCommand($"insert into schema_migrations (version, name) values ({Latest + 1}, 'from the future')"))
            await future.ExecuteNonQueryAsync();
        var e = await Assert.ThrowsAsync<InvalidOperationException>(() => PostgresFleetStore.OpenAsync(connection, default));
        Assert.Contains($"schema is version {Latest + 1}, newer than this fleet service knows ({Latest})", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task An_unreachable_database_fails_start_up_clearly()
    {
        var e = await Assert.ThrowsAnyAsync<Exception>(() => PostgresFleetStore.OpenAsync($"Host=127.0.0.1;Port={server.Port};Username=edgefleet;Database=no_such_db;Timeout=3", default));
        Assert.Contains("no_such_db", e.Message, StringComparison.Ordinal);
    }
}
