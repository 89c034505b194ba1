namespace EdgeFleet.Shared.Wire;

/// <summary>
/// Device ids appear in MQTT topics and file names, so they are restricted to a safe alphabet:
/// 1-64 characters of lower-case letters, digits, '-', '_' and '.', starting with a letter or digit.
/// </summary>
public static class DeviceId
{
    public const int MaxLength = 64;

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
}
