using EdgeFleet.Cli;
using EdgeFleet.Shared.Cli;

namespace EdgeFleet.EndToEnd.Tests;

/// <summary>The <c>--phases</c> grammar of <c>edgefleet rollout create</c>, without a fleet.</summary>
public sealed class RolloutCliTests
{
    [Fact]
    public void Phases_parse_sizes_soaks_minimums_and_the_shadow_flag()
    {
        var phases = RolloutCommands.ParsePhases("10%:1800:20:shadow,25,50%:600,100%");
        Assert.Equal("""[{"shadow":true,"percent":10,"soakSeconds":1800,"minReporting":20},{"count":25},{"percent":50,"soakSeconds":600},{"percent":100}]""",
            phases.ToJsonString());
        Assert.Equal("""[{"shadow":true,"percent":5}]""", RolloutCommands.ParsePhases("5%:shadow").ToJsonString());
    }

    [Theory]
    [InlineData("ten%", "the size is a percentage")]
    [InlineData("10%:x", "soak seconds must be a number")]
    [InlineData("10%:60:5:6", "SIZE[:SOAK_SECONDS[:MIN_REPORTING]][:shadow]")]
    [InlineData("shadow", "the size is a percentage")]
    [InlineData("", "at least one phase")]
    public void Bad_phases_say_what_is_wrong(string text, string message) =>
        Assert.Contains(message, Assert.Throws<UsageException>(() => RolloutCommands.ParsePhases(text)).Message, StringComparison.Ordinal);
}
