using EdgeFleet.Fleet.Devices;

namespace EdgeFleet.Fleet.Groups;

/// <summary>
/// A named set of devices: static (the operator lists its devices) or dynamic (every device whose tags match
/// <see cref="Selector"/>, evaluated whenever the group is used, so a device joins the moment it is tagged).
/// </summary>
public sealed record DeviceGroup
{
    public const int MaxStaticDevices = 100_000;

    public required string Name { get; init; }

    public string? Description { get; init; }

    /// <summary>A <see cref="TagSelector"/>; set for a dynamic group, null for a static one.</summary>
    public string? Selector { get; init; }

    /// <summary>A static group's devices, sorted; empty for a dynamic group.</summary>
    public IReadOnlyList<string> Devices { get; set; } = [];

    public required DateTimeOffset CreatedAt { get; init; }

    public required string CreatedBy { get; init; }

    public bool IsDynamic => Selector is not null;

    /// <summary>Whether <paramref name="device"/> belongs to the group now.</summary>
    public Func<DeviceRecord, bool> Membership()
    {
        if (Selector is null)
        {
            var members = Devices.ToHashSet(StringComparer.Ordinal);
            return d => members.Contains(d.Id);
        }
        if (!TagSelector.TryParse(Selector, out var selector, out var error))
            throw new InvalidDataException($"group '{Name}' has an unreadable selector: {error}");
        return d => selector.Matches(d.Tags);
    }

    /// <summary>Group names follow the rule for device ids: 1-64 of a-z, 0-9, '-', '_', '.'.</summary>
    public static bool IsValidName(string? name) => EdgeFleet.Shared.Wire.DeviceId.IsValid(name);
}
