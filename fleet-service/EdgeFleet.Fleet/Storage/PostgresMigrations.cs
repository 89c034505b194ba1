using Npgsql;

namespace EdgeFleet.Fleet.Storage;

/// <summary>
/// The PostgreSQL schema as an ordered list of migrations, applied at start-up. Each runs in its own
/// transaction under an advisory lock, so several instances starting together apply it once; applied
/// versions are kept in <c>schema_migrations</c>. A migration, once released, is never edited: changes come
/// as the next one.
/// </summary>
public static class PostgresMigrations
{
    /// <summary>Advisory lock key for migrations ("efmigrat" as ASCII).</summary>
    private const long LockKey = 0x6566_6d69_6772_6174;

    public static readonly IReadOnlyList<(int Version, string Name, string Sql)> All =
    [
        (1, "registry and telemetry", """
            create table devices (
                id text primary key,
                doc jsonb not null
            );
            create table telemetry (
                device text not null,
                stream text not null,
                seq bigint not null,
                ts timestamptz not null,
                kind text not null,
                body text not null,
                primary key (device, stream, seq)
            );
            create index telemetry_device_ts on telemetry (device, ts, seq);
            create table telemetry_gaps (
                id bigserial primary key,
                device text not null,
                stream text not null,
                from_seq bigint not null,
                to_seq bigint not null,
                recorded_at timestamptz not null
            );
            create index telemetry_gaps_device on telemetry_gaps (device);
            create table desired (
                device text primary key,
                payload bytea not null
            );
            """),
        (2, "device identity, API keys, audit log", """
            create table enrollment_tokens (
                hash text primary key,
                created_by text not null,
                created_at timestamptz not null,
                expires_at timestamptz not null,
                uses_left integer not null,
                note text,
                tags jsonb not null default '{}'
            );
            create table device_credentials (
                device_id text primary key,
                public_key bytea not null,
                enrolled_at timestamptz not null,
                enrolled_with text not null,
                revoked_at timestamptz,
                revoked_by text
            );
            create table api_keys (
                id text primary key,
                name text not null,
                role text not null,
                secret_hash text not null,
                created_at timestamptz not null,
                created_by text not null,
                revoked_at timestamptz
            );
            create table audit (
                id bigserial primary key,
                at timestamptz not null,
                actor text not null,
                action text not null,
                target text not null,
                before text,
                after text
            );
            create index audit_target on audit (target, id);
            """),
        (3, "telemetry as one segment per batch", """
            create table telemetry_segments (
                device text not null,
                stream text not null,
                first_seq bigint not null,
                last_seq bigint not null,
                first_ts timestamptz not null,
                seqs bigint[] not null,
                bodies text[] not null,
                primary key (device, stream, first_seq)
            );
            insert into telemetry_segments (device, stream, first_seq, last_seq, first_ts, seqs, bodies)
                select device, stream, seq, seq, ts, array[seq], array[body] from telemetry;
            -- What the per-record table knew by its primary key, the device's ledger now keeps: the ranges
            -- stored above its watermark (islands of consecutive sequence numbers).
            update devices d set doc = jsonb_set(d.doc, '{storedAboveAck}', coalesce((
                select jsonb_agg(jsonb_build_object('from', f, 'to', t) order by f)
                from (
                    select min(seq) as f, max(seq) as t
                    from (select seq, seq - row_number() over (order by seq) as island
                          from telemetry x
                          where x.device = d.id and x.stream = d.doc->>'streamId' and x.seq > (d.doc->>'ackedSeq')::bigint) numbered
                    group by island) islands), '[]'::jsonb));
            drop table telemetry;
            """),
        (4, "device groups", """
            create table device_groups (
                name text primary key,
                doc jsonb not null
            );
            """),
        (5, "model registry", """
            create table models (
                id text primary key,
                doc jsonb not null
            );
            create table model_versions (
                model_id text not null references models (id),
                version bigint not null,
                doc jsonb not null,
                primary key (model_id, version)
            );
            """),
        (6, "rollouts", """
            create table rollouts (
                id text primary key,
                created_at timestamptz not null,
                doc jsonb not null
            );
            """),
        (7, "console users", """
            create table users (
                username text primary key,
                doc jsonb not null
            );
            """),
        (8, "drift sketches", """
            create table drift_sketches (
                model text not null,
                version text not null,
                window_from timestamptz not null,
                device text not null,
                body text not null,
                primary key (model, version, window_from, device)
            );
            """),
        (9, "drift alerts", """
            create table drift_alerts (
                id text primary key,
                key text not null,
                state text not null,
                opened_at timestamptz not null,
                doc jsonb not null
            );
            create unique index drift_alerts_active on drift_alerts (key) where state <> 'resolved';
            """),
        (10, "hard examples, retraining policies and jobs", """
            create table hard_examples (
                id text primary key,
                model text not null,
                device text not null,
                ts timestamptz not null,
                doc jsonb not null
            );
            create index hard_examples_model_ts on hard_examples (model, ts);
            create table retraining_policies (
                model text primary key,
                doc jsonb not null
            );
            create table retraining_jobs (
                id text primary key,
                model text not null,
                state text not null,
                created_at timestamptz not null,
                doc jsonb not null
            );
            create unique index retraining_jobs_one_open on retraining_jobs (model) where state in ('queued', 'running', 'processing');
            create index retraining_jobs_model_created on retraining_jobs (model, created_at);
            """),
    ];

    /// <summary>Applies the migrations above <c>max(version)</c> up to <paramref name="upTo"/>; returns the versions applied.</summary>
    public static async Task<IReadOnlyList<int>> ApplyAsync(NpgsqlDataSource db, CancellationToken ct, int upTo = int.MaxValue)
    {
        var applied = new List<int>();
        await using var conn = await db.OpenConnectionAsync(ct).ConfigureAwait(false);
        // A session lock for the whole run: even "create table if not exists" races between instances.
        await using (var lockCmd = new NpgsqlCommand("select pg_advisory_lock(@k)", conn))
        {
            lockCmd.Parameters.AddWithValue("k", LockKey);
            await lockCmd.ExecuteNonQueryAsync(ct).ConfigureAwait(false);
        }
        try
        {
            await using (var create = new NpgsqlCommand("create table if not exists schema_migrations (version integer primary key, name text not null, applied_at timestamptz not null default now())", conn))
                await create.ExecuteNonQueryAsync(ct).ConfigureAwait(false);
            foreach (var (version, name, sql) in All.Where(m => m.Version <= upTo))
            {
                if (await ApplyOneAsync(conn, version, name, sql, ct).ConfigureAwait(false))
                    applied.Add(version);
            }
        }
        finally
        {
            await using var unlock = new NpgsqlCommand("select pg_advisory_unlock(@k)", conn);
            unlock.Parameters.AddWithValue("k", LockKey);
            await unlock.ExecuteNonQueryAsync(CancellationToken.None).ConfigureAwait(false);
        }
        return applied;
    }

    private static async Task<bool> ApplyOneAsync(NpgsqlConnection conn, int version, string name, string sql, CancellationToken ct)
    {
        await using var tx = await conn.BeginTransactionAsync(ct).ConfigureAwait(false);
        await using (var check = new NpgsqlCommand("select count(*) from schema_migrations where version = @v", conn, tx))
        {
            check.Parameters.AddWithValue("v", version);
            if ((long)(await check.ExecuteScalarAsync(ct).ConfigureAwait(false))! > 0)
            {
                await tx.RollbackAsync(ct).ConfigureAwait(false);
                return false;
            }
        }
        await using (var migrate = new NpgsqlCommand(sql, conn, tx))
            await migrate.ExecuteNonQueryAsync(ct).ConfigureAwait(false);
        await using (var record = new NpgsqlCommand("insert into schema_migrations (version, name) values (@v, @n)", conn, tx))
        {
            record.Parameters.AddWithValue("v", version);
            record.Parameters.AddWithValue("n", name);
            await record.ExecuteNonQueryAsync(ct).ConfigureAwait(false);
        }
        await tx.CommitAsync(ct).ConfigureAwait(false);
        return true;
    }

    /// <summary>The highest applied version (0 for an empty database).</summary>
    public static async Task<int> CurrentAsync(NpgsqlDataSource db, CancellationToken ct)
    {
        await using var cmd = db.CreateCommand("select coalesce(max(version), 0) from schema_migrations");
        try
        {
            return (int)(await cmd.ExecuteScalarAsync(ct).ConfigureAwait(false))!;
        }
        catch (PostgresException e) when (e.SqlState == PostgresErrorCodes.UndefinedTable)
        {
            return 0;
        }
    }
}
