namespace EdgeFleet.Shared.Wire;

/// <summary>
/// Device ids appear in MQTT topics and file names, so they are restricted to a safe alphabet:
/// 1-64 characters of lower-case letters, digits, '-', '_' and '.', starting with a letter or digit.
/// </summary>
/// <remarks>
/// Ids that start with <see cref="ReservedPrefix"/> belong to the fleet's own principals on every broker (its
/// MQTT client ids, its broker accounts): no device may enroll under one, so a device can never take over a
/// session or an account of the fleet.
/// </remarks>
public static class DeviceId
{
    public const int MaxLength = 64;

    /// <summary>The namespace of the fleet's own client ids and broker accounts.</summary>
    public const string ReservedPrefix = "edgefleet";

    public static bool IsValid(string? id)
    {
        if (string.IsNullOrEmpty(id) || id.Length > MaxLength || !char.IsAsciiLetterOrDigit(id[0]))
            return false;
        foreach (var c in id)
        {
            if (!(char.IsAsciiLetterLower(c) || char.IsAsciiDigit(c) || c is '-' or '_' or '.'))
                return false;
        }
        return true;
    }

    /// <summary>In the fleet's namespace (compared case-insensitively: some brokers fold user names).</summary>
    public static bool IsReserved(string? id) => id is not null && id.StartsWith(ReservedPrefix, StringComparison.OrdinalIgnoreCase);

    /// <summary>Valid and outside the fleet's namespace: an id a device may enroll under and connect with.</summary>
    public static bool IsAssignable(string? id) => IsValid(id) && !IsReserved(id);

    /// <summary>Why <paramref name="id"/> cannot be a device's id, or null when it can.</summary>
    public static string? Problem(string? id) =>
        !IsValid(id) ? "deviceId must be 1-64 of a-z, 0-9, '-', '_', '.', starting with a letter or digit"
        : IsReserved(id) ? $"deviceId must not start with '{ReservedPrefix}': that namespace is reserved for the fleet's own accounts"
        : null;
}
