using System.Globalization;

namespace EdgeFleet.Shared.Cli;

/// <summary>One rollout phase as written: a percentage or a count, and optionally soak, minimum reporting devices, shadow.</summary>
public sealed record PhaseSpec(double? Percent, int? Count, double? SoakSeconds, int? MinReporting, bool Shadow);

/// <summary>
/// The phase list an operator writes (the CLI's <c>--phases</c>, the console's rollout form):
/// <c>10%:1800:20:shadow,10%:600,50%:1800,100%</c>, each phase SIZE[:SOAK_SECONDS[:MIN_REPORTING]][:shadow],
/// SIZE a percentage of the target (<c>10%</c>) or a device count (<c>25</c>). Throws <see cref="UsageException"/> with the reason.
/// </summary>
public static class PhaseGrammar
{
    public static List<PhaseSpec> Parse(string text)
    {
        var phases = new List<PhaseSpec>();
        foreach (var part in text.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries))
        {
            var fields = part.Split(':');
            var shadow = fields.Length > 1 && fields[^1] == "shadow";
            if (shadow)
                fields = fields[..^1];
            double? percent = null;
            int? count = null;
            if (fields[0].EndsWith('%') && double.TryParse(fields[0][..^1], NumberStyles.Float, CultureInfo.InvariantCulture, out var p))
                percent = p;
            else if (int.TryParse(fields[0], NumberStyles.None, CultureInfo.InvariantCulture, out var c))
                count = c;
            else
                throw new UsageException($"phase '{part}': the size is a percentage (10%) or a device count (25)");
            double? soak = fields.Length > 1
                ? double.TryParse(fields[1], NumberStyles.Float, CultureInfo.InvariantCulture, out var s) ? s : throw new UsageException($"phase '{part}': soak seconds must be a number")
                : null;
            int? min = fields.Length > 2
                ? int.TryParse(fields[2], NumberStyles.None, CultureInfo.InvariantCulture, out var m) ? m : throw new UsageException($"phase '{part}': minimum reporting devices must be a whole number")
                : null;
            if (fields.Length > 3)
                throw new UsageException($"phase '{part}': SIZE[:SOAK_SECONDS[:MIN_REPORTING]][:shadow]");
            phases.Add(new PhaseSpec(percent, count, soak, min, shadow));
        }
        return phases.Count > 0 ? phases : throw new UsageException("give at least one phase");
    }
}
