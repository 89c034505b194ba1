namespace EdgeFleet.Shared.Stats;

/// <summary>The outcome of a test of homogeneity: the statistic, its degrees of freedom and its p-value.</summary>
public readonly record struct HomogeneityResult(double Statistic, int DegreesOfFreedom, double PValue);

/// <summary>
/// Whether two samples binned alike (a baseline's counts and a window's) could come from one distribution, given
/// how many values each holds: the statistical evidence a drift decision needs besides an effect size, since with
/// few values per bin sampling noise alone gives a PSI of about (bins − 1) · (1/n + 1/N).
/// </summary>
public static class Homogeneity
{
    /// <summary>
    /// The G-test (likelihood ratio) of homogeneity on the 2 × k table of counts, with Williams' correction for
    /// small counts: G = 2 Σ O ln(O / E) over both rows, E from the pooled shares, divided by
    /// q = 1 + (T Σ 1/R − 1)(T Σ 1/C − 1) / (6 T (k − 1)), compared with χ² on k − 1 degrees of freedom, where k
    /// counts the bins that hold a value on either side. Bins empty on both sides carry no information and are
    /// left out. A p-value of 1 when either side is empty or only one bin is used.
    /// </summary>
    public static HomogeneityResult GTest(IReadOnlyList<long> expected, IReadOnlyList<long> actual)
    {
        if (expected.Count != actual.Count)
            throw new ArgumentException($"the distributions have {expected.Count} and {actual.Count} bins");
        double n1 = 0, n2 = 0;
        for (var i = 0; i < expected.Count; i++)
        {
            n1 += expected[i];
            n2 += actual[i];
        }
        if (n1 <= 0 || n2 <= 0)
            return new HomogeneityResult(0, 0, 1);
        var total = n1 + n2;
        double g = 0, inverseColumns = 0;
        var used = 0;
        for (var i = 0; i < expected.Count; i++)
        {
            double a = expected[i], b = actual[i], column = a + b;
            if (column <= 0)
                continue;
            used++;
            inverseColumns += 1 / column;
            if (a > 0)
                g += a * Math.Log(a * total / (column * n1));
            if (b > 0)
                g += b * Math.Log(b * total / (column * n2));
        }
        if (used < 2)
            return new HomogeneityResult(0, 0, 1);
        var df = used - 1;
        var q = 1 + ((total * ((1 / n1) + (1 / n2))) - 1) * ((total * inverseColumns) - 1) / (6 * total * df);
        var statistic = Math.Max(0, 2 * g / q);
        return new HomogeneityResult(statistic, df, ChiSquareSurvival(statistic, df));
    }

    /// <summary>P(χ²_df ≥ x): the regularized upper incomplete gamma function Q(df/2, x/2).</summary>
    public static double ChiSquareSurvival(double x, int df)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(df, 1);
        return x <= 0 ? 1 : UpperGamma(df / 2.0, x / 2);
    }

    /// <summary>Q(a, x) by its series (x &lt; a + 1) or its continued fraction (modified Lentz), to about 1e-14 relative.</summary>
    private static double UpperGamma(double a, double x)
    {
        var logPrefix = (a * Math.Log(x)) - x - LogGamma(a);
        if (x < a + 1)
        {
            // P(a, x) = e^(-x) x^a / Γ(a + 1) · Σ x^n / ((a + 1)…(a + n))
            double term = 1 / a, sum = term;
            for (var n = 1; n < 10_000; n++)
            {
                term *= x / (a + n);
                sum += term;
                if (Math.Abs(term) < Math.Abs(sum) * 1e-16)
                    break;
            }
            return Math.Clamp(1 - (sum * Math.Exp(logPrefix)), 0, 1);
        }
        const double tiny = 1e-300;
        var bn = x + 1 - a;
        var c = 1 / tiny;
        var d = 1 / bn;
        var h = d;
        for (var i = 1; i < 10_000; i++)
        {
            var an = -i * (i - a);
            bn += 2;
            d = (an * d) + bn;
            if (Math.Abs(d) < tiny)
                d = tiny;
            c = bn + (an / c);
            if (Math.Abs(c) < tiny)
                c = tiny;
            d = 1 / d;
            var delta = d * c;
            h *= delta;
            if (Math.Abs(delta - 1) < 1e-16)
                break;
        }
        return Math.Clamp(Math.Exp(logPrefix) * h, 0, 1);
    }

    /// <summary>ln Γ(x) for x &gt; 0 (Lanczos, g = 7, nine terms; about 1e-15 relative).</summary>
    public static double LogGamma(double x)
    {
        ReadOnlySpan<double> c =
        [
            0.99999999999980993, 676.5203681218851, -1259.1392167224028, 771.32342877765313, -176.61502916214059,
            12.507343278686905, -0.13857109526572012, 9.9843695780195716e-6, 1.5056327351493116e-7,
        ];
        if (x < 0.5)
            return Math.Log(Math.PI / Math.Abs(Math.Sin(Math.PI * x))) - LogGamma(1 - x);
        x -= 1;
        var sum = c[0];
        for (var i = 1; i < c.Length; i++)
            sum += c[i] / (x + i);
        var t = x + 7.5;
        return (0.5 * Math.Log(2 * Math.PI)) + ((x + 0.5) * Math.Log(t)) - t + Math.Log(sum);
    }
}
