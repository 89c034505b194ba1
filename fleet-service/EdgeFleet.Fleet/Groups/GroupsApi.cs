using System.Security.Claims;
using System.Text.Json;
using EdgeFleet.Fleet.Devices;
using EdgeFleet.Fleet.Identity;
using EdgeFleet.Fleet.Storage;
using EdgeFleet.Shared.Wire;

namespace EdgeFleet.Fleet.Groups;

public sealed record TagPatchRequest
{
    public Dictionary<string, string> Set { get; set; } = [];

    public List<string> Remove { get; set; } = [];
}

public sealed record GroupRequest
{
    public string? Name { get; set; }

    public string? Description { get; set; }

    /// <summary>Set for a dynamic group; leave out (and list <see cref="Devices"/>) for a static one.</summary>
    public string? Selector { get; set; }

    public List<string> Devices { get; set; } = [];
}

public sealed record GroupChangeRequest
{
    public string? Description { get; set; }

    /// <summary>A dynamic group's new selector.</summary>
    public string? Selector { get; set; }

    /// <summary>Devices to add to (or remove from) a static group.</summary>
    public List<string> Add { get; set; } = [];

    public List<string> Remove { get; set; } = [];
}

/// <param name="Members">The devices in the group now (a dynamic group's are evaluated at the request).</param>
public sealed record GroupView(string Name, string Kind, string? Description, string? Selector, int MemberCount, IReadOnlyList<string> Members,
    DateTimeOffset CreatedAt, string CreatedBy);

/// <summary>
/// Device tags (<c>PATCH /api/devices/{id}/tags</c>) and groups (<c>/api/groups</c>): static groups list their
/// devices, dynamic groups hold a <see cref="TagSelector"/>. Every change is audited with its before and after.
/// </summary>
public static class GroupsApi
{
    public static IEndpointRouteBuilder MapGroupsApi(this IEndpointRouteBuilder app)
    {
        app.MapMethods("/api/devices/{id}/tags", ["PATCH"], ChangeTagsAsync).RequireAuthorization(ApiAuthentication.OperatorPolicy);
        var groups = app.MapGroup("/api/groups");
        groups.MapGet("", ListAsync).RequireAuthorization(ApiAuthentication.ViewerPolicy);
        groups.MapGet("/{name}", GetAsync).RequireAuthorization(ApiAuthentication.ViewerPolicy);
        groups.MapPost("", CreateAsync).RequireAuthorization(ApiAuthentication.OperatorPolicy);
        groups.MapMethods("/{name}", ["PATCH"], ChangeAsync).RequireAuthorization(ApiAuthentication.OperatorPolicy);
        groups.MapDelete("/{name}", DeleteAsync).RequireAuthorization(ApiAuthentication.OperatorPolicy);
        return app;
    }

    /// <summary>
    /// The device filter of <c>?group=</c> and <c>?selector=</c> (both must hold when both are given), or the
    /// error to answer with.
    /// </summary>
    public static async Task<(Func<DeviceRecord, bool> Filter, IResult? Error)> FilterAsync(string? group, string? selector, IFleetStore store, CancellationToken ct)
    {
        Func<DeviceRecord, bool> filter = _ => true;
        if (!string.IsNullOrWhiteSpace(group))
        {
            if (await store.GetGroupAsync(group, ct).ConfigureAwait(false) is not { } g)
                return (filter, UnknownGroup(group));
            filter = g.Membership();
        }
        if (!string.IsNullOrWhiteSpace(selector))
        {
            if (!TagSelector.TryParse(selector, out var parsed, out var error))
                return (filter, TypedResults.BadRequest(new ApiError("InvalidSelector", error!)));
            var inGroup = filter;
            filter = d => inGroup(d) && parsed.Matches(d.Tags);
        }
        return (filter, null);
    }

    private static async Task<IResult> ChangeTagsAsync(string id, TagPatchRequest request, ClaimsPrincipal user, IFleetStore store,
        FleetOptions options, TimeProvider time, CancellationToken ct)
    {
        if (!DeviceId.IsValid(id))
            return TypedResults.BadRequest(new ApiError("InvalidDeviceId", "device ids are 1-64 of a-z, 0-9, '-', '_', '.'"));
        if (IdentityApi.ValidateTags(request.Set) is { } problem)
            return TypedResults.BadRequest(new ApiError("InvalidTags", problem));
        if (request.Remove.FirstOrDefault(k => !TagSelector.IsKey(k)) is { } badKey)
            return TypedResults.BadRequest(new ApiError("InvalidTags", $"'{LogText.Sanitize(badKey)}' is not a tag name"));
        var change = await store.ChangeTagsAsync(id, new TagPatch(request.Set, request.Remove), ct).ConfigureAwait(false);
        if (change is null)
            return TypedResults.NotFound(new ApiError("UnknownDevice", $"no device '{id}' is known"));
        if (change.After is null)
            return TypedResults.BadRequest(new ApiError("InvalidTags", $"a device carries at most {TagPatch.MaxTags} tags"));
        await IdentityApi.AuditAsync(store, user, "device.tags", id, TagsJson(change.Before), TagsJson(change.After), time, ct).ConfigureAwait(false);
        var device = await store.GetDeviceAsync(id, ct).ConfigureAwait(false);
        return TypedResults.Ok(DeviceView.Of(device!, time.GetUtcNow(), TimeSpan.FromSeconds(options.OfflineAfterSeconds)));
    }

    private static async Task<IResult> ListAsync(IFleetStore store, CancellationToken ct)
    {
        var devices = await store.ListDevicesAsync(ct).ConfigureAwait(false);
        var groups = await store.ListGroupsAsync(ct).ConfigureAwait(false);
        return TypedResults.Ok(groups.Select(g => View(g, devices, listMembers: false)).ToList());
    }

    private static async Task<IResult> GetAsync(string name, IFleetStore store, CancellationToken ct)
    {
        if (await store.GetGroupAsync(name, ct).ConfigureAwait(false) is not { } group)
            return UnknownGroup(name);
        return TypedResults.Ok(View(group, await store.ListDevicesAsync(ct).ConfigureAwait(false), listMembers: true));
    }

    private static async Task<IResult> CreateAsync(GroupRequest request, ClaimsPrincipal user, IFleetStore store, TimeProvider time, CancellationToken ct)
    {
        if (!DeviceGroup.IsValidName(request.Name))
            return TypedResults.BadRequest(new ApiError("InvalidGroupName", "group names are 1-64 of a-z, 0-9, '-', '_', '.'"));
        if (request.Selector is not null && request.Devices.Count > 0)
            return TypedResults.BadRequest(new ApiError("InvalidGroup", "a group is static (devices) or dynamic (selector), not both"));
        if (request.Selector is not null && !TagSelector.TryParse(request.Selector, out _, out var selectorError))
            return TypedResults.BadRequest(new ApiError("InvalidSelector", selectorError!));
        if (Describe(request.Description) is { } descriptionError)
            return descriptionError;
        var devices = request.Devices.Distinct(StringComparer.Ordinal).Order(StringComparer.Ordinal).ToList();
        if (await CheckDevicesAsync(devices, store, ct).ConfigureAwait(false) is { } devicesError)
            return devicesError;
        var group = new DeviceGroup
        {
            Name = request.Name!,
            Description = request.Description,
            Selector = request.Selector?.Trim(),
            Devices = devices,
            CreatedAt = time.GetUtcNow(),
            CreatedBy = IdentityApi.Actor(user),
        };
        if (!await store.CreateGroupAsync(group, ct).ConfigureAwait(false))
            return TypedResults.Conflict(new ApiError("GroupExists", $"a group '{group.Name}' exists"));
        await IdentityApi.AuditAsync(store, user, "group.create", "group:" + group.Name, null, GroupJson(group), time, ct).ConfigureAwait(false);
        return TypedResults.Ok(View(group, await store.ListDevicesAsync(ct).ConfigureAwait(false), listMembers: true));
    }

    private static async Task<IResult> ChangeAsync(string name, GroupChangeRequest request, ClaimsPrincipal user, IFleetStore store, TimeProvider time, CancellationToken ct)
    {
        if (await store.GetGroupAsync(name, ct).ConfigureAwait(false) is not { } current)
            return UnknownGroup(name);
        if (current.IsDynamic && (request.Add.Count > 0 || request.Remove.Count > 0))
            return TypedResults.BadRequest(new ApiError("InvalidGroup", $"'{name}' is a dynamic group: change its selector, not its device list"));
        if (!current.IsDynamic && request.Selector is not null)
            return TypedResults.BadRequest(new ApiError("InvalidGroup", $"'{name}' is a static group: it has no selector"));
        if (request.Selector is not null && !TagSelector.TryParse(request.Selector, out _, out var selectorError))
            return TypedResults.BadRequest(new ApiError("InvalidSelector", selectorError!));
        if (Describe(request.Description) is { } descriptionError)
            return descriptionError;
        if (await CheckDevicesAsync(request.Add, store, ct).ConfigureAwait(false) is { } devicesError)
            return devicesError;
        var tooMany = false;
        var changed = await store.UpdateGroupAsync(name, g =>
        {
            var devices = g.Devices.Union(request.Add, StringComparer.Ordinal).Except(request.Remove, StringComparer.Ordinal)
                .Order(StringComparer.Ordinal).ToList();
            tooMany = devices.Count > DeviceGroup.MaxStaticDevices;
            return tooMany ? g : g with
            {
                Description = request.Description ?? g.Description,
                Selector = request.Selector?.Trim() ?? g.Selector,
                Devices = devices,
            };
        }, ct).ConfigureAwait(false);
        if (changed is not { } change)
            return UnknownGroup(name);
        if (tooMany)
            return TypedResults.BadRequest(new ApiError("InvalidGroup", $"a static group holds at most {DeviceGroup.MaxStaticDevices} devices"));
        await IdentityApi.AuditAsync(store, user, "group.update", "group:" + name, GroupJson(change.Before), GroupJson(change.After), time, ct).ConfigureAwait(false);
        return TypedResults.Ok(View(change.After, await store.ListDevicesAsync(ct).ConfigureAwait(false), listMembers: true));
    }

    private static async Task<IResult> DeleteAsync(string name, ClaimsPrincipal user, IFleetStore store, TimeProvider time, CancellationToken ct)
    {
        if (await store.DeleteGroupAsync(name, ct).ConfigureAwait(false) is not { } deleted)
            return UnknownGroup(name);
        await IdentityApi.AuditAsync(store, user, "group.delete", "group:" + name, GroupJson(deleted), null, time, ct).ConfigureAwait(false);
        return TypedResults.NoContent();
    }

    private static async Task<IResult?> CheckDevicesAsync(IReadOnlyCollection<string> ids, IFleetStore store, CancellationToken ct)
    {
        if (ids.Count == 0)
            return null;
        if (ids.Count > DeviceGroup.MaxStaticDevices)
            return TypedResults.BadRequest(new ApiError("InvalidGroup", $"a static group holds at most {DeviceGroup.MaxStaticDevices} devices"));
        var known = (await store.ListDevicesAsync(ct).ConfigureAwait(false)).Select(d => d.Id).ToHashSet(StringComparer.Ordinal);
        var unknown = ids.Where(id => !known.Contains(id)).ToList();
        return unknown.Count == 0
            ? null
            : TypedResults.NotFound(new ApiError("UnknownDevice",
                $"{unknown.Count} device(s) are not known: {string.Join(", ", unknown.Take(5).Select(LogText.Sanitize))}{(unknown.Count > 5 ? ", ..." : "")}"));
    }

    private static IResult? Describe(string? description) =>
        description is { Length: > 500 } ? TypedResults.BadRequest(new ApiError("InvalidGroup", "the description is longer than 500 characters")) : null;

    private static IResult UnknownGroup(string name) => TypedResults.NotFound(new ApiError("UnknownGroup", $"no group '{LogText.Sanitize(name)}'"));

    private static GroupView View(DeviceGroup group, IReadOnlyList<DeviceRecord> devices, bool listMembers)
    {
        var isMember = group.Membership();
        var members = devices.Where(isMember).Select(d => d.Id).ToList();
        return new GroupView(group.Name, group.IsDynamic ? "dynamic" : "static", group.Description, group.Selector, members.Count,
            listMembers ? members : [], group.CreatedAt, group.CreatedBy);
    }

    private static string TagsJson(IReadOnlyDictionary<string, string> tags) =>
        JsonSerializer.Serialize(new Dictionary<string, string>(tags), FleetStoreJsonContext.Default.DictionaryStringString);

    private static string GroupJson(DeviceGroup group) => JsonSerializer.Serialize(group, FleetStoreJsonContext.Default.DeviceGroup);
}
