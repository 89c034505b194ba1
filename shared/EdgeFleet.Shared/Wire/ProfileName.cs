namespace EdgeFleet.Shared.Wire;

/// <summary>
/// A hardware profile's name, as <c>hardware-profiles/schema.json</c> defines it (<c>^[a-z0-9][a-z0-9._-]{0,63}$</c>):
/// the same safe alphabet as device ids, because profile names key signed manifests' artifacts, file names and
/// console filters. Every entrance that takes a profile name from a device checks it here.
/// </summary>
public static class ProfileName
{
    public const int MaxLength = 64;

    public static bool IsValid(string? name) => DeviceId.IsValid(name);

    /// <summary>Why <paramref name="name"/> is not a profile name, or null when it is.</summary>
    public static string? Problem(string? name, string field = "hardwareProfile") =>
        IsValid(name) ? null : $"{field} must be 1-64 of a-z, 0-9, '-', '_', '.', starting with a letter or digit (hardware-profiles/schema.json)";
}
