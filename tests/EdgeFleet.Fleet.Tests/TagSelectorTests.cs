using EdgeFleet.Fleet.Devices;

namespace EdgeFleet.Fleet.Tests;

public sealed class TagSelectorTests
{
    private static readonly Dictionary<string, string> Berlin = new() { ["site"] = "berlin", ["region"] = "eu", ["customer"] = "acme" };
    private static readonly Dictionary<string, string> Austin = new() { ["site"] = "austin", ["region"] = "us", ["canary"] = "yes" };
    private static readonly Dictionary<string, string> Untagged = [];

    private static bool[] Match(string selector)
    {
        Assert.True(TagSelector.TryParse(selector, out var parsed, out var error), error);
        return [parsed.Matches(Berlin), parsed.Matches(Austin), parsed.Matches(Untagged)];
    }

    [Theory]
    [InlineData("", true, true, true)]
    [InlineData("site=berlin", true, false, false)]
    [InlineData("site==berlin", true, false, false)]
    [InlineData("site != berlin", false, true, true)]
    [InlineData("region in (eu, uk)", true, false, false)]
    [InlineData("region notin (eu,uk)", false, true, true)]
    [InlineData("customer", true, false, false)]
    [InlineData("!canary", true, false, true)]
    [InlineData("region in (eu,us),!canary", true, false, false)]
    [InlineData("site=berlin,region=us", false, false, false)]
    public void Clauses_all_hold(string selector, bool berlin, bool austin, bool untagged) =>
        Assert.Equal([berlin, austin, untagged], Match(selector));

    [Theory]
    [InlineData("site=berlin,", "empty clause")]
    [InlineData("site=(x)", "may not contain")]
    [InlineData("sí=x", "is not a tag name")]
    [InlineData("region in eu", "is not a tag name")]
    [InlineData("region in (eu,)", "empty or malformed value")]
    [InlineData("region within (eu)", "expected 'key in (a,b)'")]
    [InlineData("!", "'!' must be followed by a tag name")]
    [InlineData("!a=b", "is not a tag name")]
    public void A_malformed_selector_names_its_clause(string selector, string reason)
    {
        Assert.False(TagSelector.TryParse(selector, out _, out var error));
        Assert.Contains(reason, error, StringComparison.Ordinal);
    }

    [Fact]
    public void A_very_long_selector_is_refused() =>
        Assert.False(TagSelector.TryParse(string.Join(',', Enumerable.Repeat("site=x", 200)), out _, out _));
}
