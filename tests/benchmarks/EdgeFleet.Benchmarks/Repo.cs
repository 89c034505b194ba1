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
}
