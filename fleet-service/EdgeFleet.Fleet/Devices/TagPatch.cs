namespace EdgeFleet.Fleet.Devices;

/// <summary>An operator's change to a device's tags: values to set and names to remove.</summary>
public sealed record TagPatch(IReadOnlyDictionary<string, string> Set, IReadOnlyCollection<string> Remove)
{
    /// <summary>The most tags a device (or an enrollment token) carries.</summary>
    public const int MaxTags = 32;

    /// <summary>The tags after the change, or null when they would be more than <see cref="MaxTags"/>.</summary>
    public IReadOnlyDictionary<string, string>? Apply(IReadOnlyDictionary<string, string> tags)
    {
        var result = new SortedDictionary<string, string>(StringComparer.Ordinal);
        foreach (var (k, v) in tags)
            result[k] = v;
        foreach (var k in Remove)
            result.Remove(k);
        foreach (var (k, v) in Set)
            result[k] = v;
        return result.Count > MaxTags ? null : new Dictionary<string, string>(result, StringComparer.Ordinal);
    }
}

/// <param name="After">The tags after the change; null when it was refused for making more than <see cref="TagPatch.MaxTags"/>.</param>
public sealed record TagChange(IReadOnlyDictionary<string, string> Before, IReadOnlyDictionary<string, string>? After);
