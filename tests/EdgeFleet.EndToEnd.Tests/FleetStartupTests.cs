using System.Globalization;
using EdgeFleet.EndToEnd.Tests.Harness;

namespace EdgeFleet.EndToEnd.Tests;

/// <summary>A fleet service that cannot start says why in one sentence, with no stack trace, and exits 1 (systemd shows it).</summary>
[Collection("processes")]
public sealed class FleetStartupTests
{
    private static (int Exit, string Output) Run(string dir, params string[] extra)
    {
        string[] args =
        [
            Repo.FleetDll,
            "--urls", $"http://127.0.0.1:{Repo.FreePort()}",
            "--Fleet:Broker:Port", Repo.FreePort().ToString(CultureInfo.InvariantCulture),
            "--Fleet:Storage:ArtifactsPath", Path.Combine(dir, "artifacts"),
            "--Fleet:Security:AdminKeyPath", Path.Combine(dir, "admin.key"),
            .. extra,
        ];
        using var fleet = ChildProcess.Start("fleet-refused", "dotnet", args, Path.GetDirectoryName(Repo.FleetDll));
        var exit = fleet.WaitForExit(TimeSpan.FromSeconds(60));
        return (exit, fleet.Output);
    }

    private static void Refused((int Exit, string Output) run, params string[] saying)
    {
        Assert.True(run.Exit == 1, $"exit {run.Exit}:\n{run.Output}");
        Assert.Contains("edgefleet-fleet cannot start: ", run.Output, StringComparison.Ordinal);
        foreach (var words in saying)
            Assert.Contains(words, run.Output, StringComparison.Ordinal);
        Assert.DoesNotContain(run.Output.Split('\n'), line => line.TrimStart().StartsWith("at ", StringComparison.Ordinal));
    }

    [Fact]
    public void A_second_service_on_the_same_store_and_an_invalid_configuration_are_refused_in_one_sentence()
    {
        var dir = Directory.CreateTempSubdirectory("edgefleet-startup-").FullName;
        try
        {
            using (var running = new Fleet(dir))
            {
                var store = Path.Combine(dir, "fleet.db");
                Refused(Run(dir, "--Fleet:Storage:Path", store), store, "is another fleet service running on it?");
                Assert.False(running.Exited);
            }
            Refused(Run(dir, "--Fleet:Storage:Path", " "), "invalid configuration: Fleet:Storage:Path is required");
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }
}
