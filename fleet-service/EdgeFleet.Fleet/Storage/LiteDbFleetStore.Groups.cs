using JsonSerializer = System.Text.Json.JsonSerializer;
using EdgeFleet.Fleet.Devices;
using EdgeFleet.Fleet.Groups;
using LiteDB;

namespace EdgeFleet.Fleet.Storage;

/// <summary>Device tags and groups in the embedded store. A group is one document: its name and its JSON.</summary>
public sealed partial class LiteDbFleetStore
{
    private ILiteCollection<BsonDocument> Groups => _db.GetCollection("device_groups");

    public Task<TagChange?> ChangeTagsAsync(string deviceId, TagPatch patch, CancellationToken cancellationToken) =>
        WriteAsync(() =>
        {
            if (_devices.FindById(deviceId) is not { } doc)
                return null;
            var device = LiteDbDocuments.ToDevice(doc);
            var after = patch.Apply(device.Tags);
            if (after is not null)
                _devices.Update(LiteDbDocuments.FromDevice(device with { Tags = after }));
            return new TagChange(device.Tags, after);
        }, cancellationToken);

    public Task<bool> CreateGroupAsync(DeviceGroup group, CancellationToken cancellationToken) =>
        WriteAsync(() => Groups.FindById(group.Name) is null && Groups.Insert(ToDocument(group)) is not null, cancellationToken);

    public Task<DeviceGroup?> GetGroupAsync(string name, CancellationToken cancellationToken) =>
        UnderGateAsync(() => Groups.FindById(name) is { } doc ? ToGroup(doc) : null, cancellationToken);

    public Task<IReadOnlyList<DeviceGroup>> ListGroupsAsync(CancellationToken cancellationToken) =>
        UnderGateAsync<IReadOnlyList<DeviceGroup>>(() => Groups.FindAll().Select(ToGroup).OrderBy(g => g.Name, StringComparer.Ordinal).ToList(), cancellationToken);

    public Task<(DeviceGroup Before, DeviceGroup After)?> UpdateGroupAsync(string name, Func<DeviceGroup, DeviceGroup> change, CancellationToken cancellationToken) =>
        WriteAsync<(DeviceGroup, DeviceGroup)?>(() =>
        {
            if (Groups.FindById(name) is not { } doc)
                return null;
            var before = ToGroup(doc);
            var after = change(before) with { Name = name };
            Groups.Update(ToDocument(after));
            return (before, after);
        }, cancellationToken);

    public Task<DeviceGroup?> DeleteGroupAsync(string name, CancellationToken cancellationToken) =>
        WriteAsync(() =>
        {
            if (Groups.FindById(name) is not { } doc)
                return null;
            Groups.Delete(name);
            return ToGroup(doc);
        }, cancellationToken);

    private static BsonDocument ToDocument(DeviceGroup group) => new()
    {
        ["_id"] = group.Name,
        ["json"] = JsonSerializer.Serialize(group, FleetStoreJsonContext.Default.DeviceGroup),
    };

    private static DeviceGroup ToGroup(BsonDocument doc) =>
        JsonSerializer.Deserialize(doc["json"].AsString, FleetStoreJsonContext.Default.DeviceGroup)
        ?? throw new InvalidDataException($"group {doc["_id"].AsString} is unreadable");
}
