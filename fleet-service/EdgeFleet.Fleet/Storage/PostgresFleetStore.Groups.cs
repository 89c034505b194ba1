using System.Text.Json;
using EdgeFleet.Fleet.Devices;
using EdgeFleet.Fleet.Groups;
using Npgsql;

namespace EdgeFleet.Fleet.Storage;

/// <summary>Device tags and groups in PostgreSQL. A change reads and writes under a row lock, so two instances cannot interleave.</summary>
public sealed partial class PostgresFleetStore
{
    public async Task<TagChange?> ChangeTagsAsync(string deviceId, TagPatch patch, CancellationToken cancellationToken)
    {
        await using var conn = await _db.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        await using var tx = await conn.BeginTransactionAsync(cancellationToken).ConfigureAwait(false);
        DeviceRecord device;
        await using (var select = new NpgsqlCommand("select doc from devices where id = @id for update", conn, tx))
        {
            select.Parameters.AddWithValue("id", deviceId);
            if (await select.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false) is not string doc)
                return null;
            device = FromJson(doc);
        }
        var after = patch.Apply(device.Tags);
        if (after is not null)
            await SaveDeviceAsync(conn, tx, device with { Tags = after }, cancellationToken).ConfigureAwait(false);
        await tx.CommitAsync(cancellationToken).ConfigureAwait(false);
        return new TagChange(device.Tags, after);
    }

    public async Task<bool> CreateGroupAsync(DeviceGroup group, CancellationToken cancellationToken)
    {
        await using var cmd = _db.CreateCommand("insert into device_groups (name, doc) values (@n, @doc::jsonb) on conflict (name) do nothing");
        cmd.Parameters.AddWithValue("n", group.Name);
        cmd.Parameters.AddWithValue("doc", GroupJson(group));
        return await cmd.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false) == 1;
    }

    public async Task<DeviceGroup?> GetGroupAsync(string name, CancellationToken cancellationToken)
    {
        await using var cmd = _db.CreateCommand("select doc from device_groups where name = @n");
        cmd.Parameters.AddWithValue("n", name);
        return await cmd.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false) is string doc ? ToGroup(doc) : null;
    }

    public async Task<IReadOnlyList<DeviceGroup>> ListGroupsAsync(CancellationToken cancellationToken)
    {
        await using var cmd = _db.CreateCommand("select doc from device_groups order by name collate \"C\"");
        var groups = new List<DeviceGroup>();
        await using var reader = await cmd.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
        while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
            groups.Add(ToGroup(reader.GetString(0)));
        return groups;
    }

    public async Task<(DeviceGroup Before, DeviceGroup After)?> UpdateGroupAsync(string name, Func<DeviceGroup, DeviceGroup> change, CancellationToken cancellationToken)
    {
        await using var conn = await _db.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        await using var tx = await conn.BeginTransactionAsync(cancellationToken).ConfigureAwait(false);
        DeviceGroup before;
        await using (var select = new NpgsqlCommand("select doc from device_groups where name = @n for update", conn, tx))
        {
            select.Parameters.AddWithValue("n", name);
            if (await select.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false) is not string doc)
                return null;
            before = ToGroup(doc);
        }
        var after = change(before) with { Name = name };
        await using (var save = new NpgsqlCommand("update device_groups set doc = @doc::jsonb where name = @n", conn, tx))
        {
            save.Parameters.AddWithValue("n", name);
            save.Parameters.AddWithValue("doc", GroupJson(after));
            await save.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
        }
        await tx.CommitAsync(cancellationToken).ConfigureAwait(false);
        return (before, after);
    }

    public async Task<DeviceGroup?> DeleteGroupAsync(string name, CancellationToken cancellationToken)
    {
        await using var cmd = _db.CreateCommand("delete from device_groups where name = @n returning doc::text");
        cmd.Parameters.AddWithValue("n", name);
        return await cmd.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false) is string doc ? ToGroup(doc) : null;
    }

    private static string GroupJson(DeviceGroup group) => JsonSerializer.Serialize(group, FleetStoreJsonContext.Default.DeviceGroup);

    private static DeviceGroup ToGroup(string json) =>
        JsonSerializer.Deserialize(json, FleetStoreJsonContext.Default.DeviceGroup) ?? throw new InvalidDataException("a device group is unreadable");
}
