namespace EdgeFleet.EndToEnd.Tests.Harness;

/// <summary>The <c>edgefleet</c> command-line tool as an operator runs it: against a fleet (its URL and admin key), or offline.</summary>
public static class FleetCli
{
    /// <summary>Runs it and checks its exit code; returns its output.</summary>
    public static string Run(int expectedExit, Fleet? fleet, string? stdin, params string[] args)
    {
        string[] target = fleet is null ? [] : ["--fleet", fleet.Url];
        using var cli = ChildProcess.Start("cli", "dotnet", [Repo.CliDll, .. args, .. target],
            environment: fleet is null ? null : new Dictionary<string, string> { ["EDGEFLEET_API_KEY"] = fleet.AdminKey }, stdin: stdin);
        Assert.True(cli.WaitForExit(TimeSpan.FromSeconds(120)) == expectedExit, cli.Output);
        return cli.Output;
    }
}
