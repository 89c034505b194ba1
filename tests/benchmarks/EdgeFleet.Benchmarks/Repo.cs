namespace EdgeFleet.Benchmarks;

internal static class Repo
{
    /// <summary>The repository root: the folder above this binary that holds EdgeFleet.slnx.</summary>
    public static string Root
    {
        get
        {
            for (var d = new DirectoryInfo(AppContext.BaseDirectory); d is not null; d = d.Parent)
            {
                if (File.Exists(Path.Combine(d.FullName, "EdgeFleet.slnx")))
                    return d.FullName;
            }
            throw new InvalidOperationException("not inside the EdgeFleet repository");
        }
    }

    /// <summary>Runs a program to its end and returns its standard output; throws when it fails.</summary>
    public static string Capture(string file, params string[] args)
    {
        var start = new System.Diagnostics.ProcessStartInfo(file) { RedirectStandardOutput = true };
        foreach (var a in args)
            start.ArgumentList.Add(a);
        using var process = System.Diagnostics.Process.Start(start)!;
        var output = process.StandardOutput.ReadToEnd();
        process.WaitForExit();
        return process.ExitCode == 0 ? output : throw new InvalidOperationException($"{file} exited with {process.ExitCode}");
    }

    /// <summary>The cache of PaddleOCR's models, fetched by scripts/fetch-test-models.sh when missing.</summary>
    public static string TestModels => Capture(Path.Combine(Root, "scripts", "fetch-test-models.sh")).Trim().Split('\n')[^1];
}
