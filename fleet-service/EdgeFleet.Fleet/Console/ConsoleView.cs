using System.Globalization;
using System.Security.Claims;
using System.Text;
using System.Text.Encodings.Web;
using EdgeFleet.Fleet.Identity;
using Microsoft.AspNetCore.Html;

namespace EdgeFleet.Fleet.Console;

/// <summary>What the console's pages share: who is looking, and charts drawn on the server as SVG (no script, no CDN).</summary>
public static class ConsoleView
{
    public static string Actor(ClaimsPrincipal user) => IdentityApi.Actor(user);

    public static bool Can(ClaimsPrincipal user, OperatorRole role) =>
        Enum.TryParse<OperatorRole>(user.FindFirst(ClaimTypes.Role)?.Value, out var has) && Enum.IsDefined(has) && has >= role;

    public static string Ago(DateTimeOffset? at, DateTimeOffset now)
    {
        if (at is not { } t)
            return "never";
        var span = now - t;
        return span.TotalSeconds < 90 ? $"{Math.Max(0, span.TotalSeconds):F0} s ago"
            : span.TotalMinutes < 90 ? $"{span.TotalMinutes:F0} min ago"
            : span.TotalHours < 48 ? $"{span.TotalHours:F0} h ago"
            : t.ToString("yyyy-MM-dd HH:mm", CultureInfo.InvariantCulture);
    }

    /// <summary>A progress bar: <paramref name="done"/> of <paramref name="total"/>, with the count for screen readers and tests.</summary>
    public static IHtmlContent Bar(int done, int total, int failed = 0, string? id = null)
    {
        var share = total == 0 ? 0 : Math.Clamp(100.0 * done / total, 0, 100);
        var bad = total == 0 ? 0 : Math.Clamp(100.0 * failed / total, 0, 100 - share);
        var idAttr = id is null ? "" : $" id=\"{HtmlEncoder.Default.Encode(id)}\"";
        return new HtmlString(string.Create(CultureInfo.InvariantCulture,
            $"<span class=\"bar\"{idAttr} role=\"progressbar\" aria-valuemin=\"0\" aria-valuemax=\"{total}\" aria-valuenow=\"{done}\" data-done=\"{done}\" data-total=\"{total}\"><span style=\"width:{share:F1}%;float:left\"></span><span class=\"bad\" style=\"width:{bad:F1}%;float:left\"></span></span> {done}/{total}"));
    }

    /// <summary>Lines over time (for example p50 and p95 latency per window), with the axis range labelled.</summary>
    public static IHtmlContent Lines(string title, IReadOnlyList<(DateTimeOffset At, double Value)>[] series, string[] names, string unit, int width = 640, int height = 160)
    {
        string[] colors = ["#1f6feb", "#cf222e", "#1a7f37", "#9a6700"];
        var points = series.SelectMany(s => s).ToList();
        var sb = new StringBuilder();
        sb.Append(CultureInfo.InvariantCulture, $"<svg role=\"img\" aria-label=\"{HtmlEncoder.Default.Encode(title)}\" width=\"{width}\" height=\"{height + 30}\" viewBox=\"0 0 {width} {height + 30}\" style=\"background:#fff;border:1px solid #d9dee6\">");
        if (points.Count == 0)
        {
            sb.Append(CultureInfo.InvariantCulture, $"<text x=\"10\" y=\"20\">no data yet</text></svg>");
            return new HtmlString(sb.ToString());
        }
        var (t0, t1) = (points.Min(p => p.At), points.Max(p => p.At));
        var max = Math.Max(points.Max(p => p.Value), 1e-9);
        var span = Math.Max((t1 - t0).TotalSeconds, 1);
        double X(DateTimeOffset t) => 40 + ((t - t0).TotalSeconds / span * (width - 50));
        double Y(double v) => 10 + ((1 - (v / max)) * (height - 20));
        for (var i = 0; i < series.Length; i++)
        {
            var path = string.Join(' ', series[i].OrderBy(p => p.At).Select(p => string.Create(CultureInfo.InvariantCulture, $"{X(p.At):F1},{Y(p.Value):F1}")));
            sb.Append(CultureInfo.InvariantCulture, $"<polyline fill=\"none\" stroke=\"{colors[i % colors.Length]}\" stroke-width=\"1.5\" points=\"{path}\"/>");
            sb.Append(CultureInfo.InvariantCulture, $"<text x=\"{45 + (i * 90)}\" y=\"{height + 24}\" style=\"fill:{colors[i % colors.Length]}\">{HtmlEncoder.Default.Encode(names[i])}</text>");
        }
        sb.Append(CultureInfo.InvariantCulture, $"<text x=\"2\" y=\"14\">{max:G3} {unit}</text><text x=\"2\" y=\"{height - 6}\">0</text>");
        sb.Append(CultureInfo.InvariantCulture, $"<text x=\"40\" y=\"{height + 10}\">{t0:HH:mm:ss}</text><text x=\"{width - 60}\" y=\"{height + 10}\">{t1:HH:mm:ss}</text></svg>");
        return new HtmlString(sb.ToString());
    }

    /// <summary>A bar chart of counts per category (for example the predicted classes).</summary>
    public static IHtmlContent Histogram(string title, IReadOnlyList<(string Label, double Value)> bars, int width = 420, int height = 140)
    {
        var sb = new StringBuilder();
        sb.Append(CultureInfo.InvariantCulture, $"<svg role=\"img\" aria-label=\"{HtmlEncoder.Default.Encode(title)}\" width=\"{width}\" height=\"{height + 20}\" style=\"background:#fff;border:1px solid #d9dee6\">");
        var max = bars.Count == 0 ? 1 : Math.Max(bars.Max(b => b.Value), 1e-9);
        var w = bars.Count == 0 ? 0 : (width - 20.0) / bars.Count;
        for (var i = 0; i < bars.Count; i++)
        {
            var h = bars[i].Value / max * (height - 20);
            sb.Append(CultureInfo.InvariantCulture, $"<rect x=\"{10 + (i * w) + 2:F1}\" y=\"{height - h:F1}\" width=\"{Math.Max(w - 4, 1):F1}\" height=\"{h:F1}\" fill=\"#1f6feb\"><title>{HtmlEncoder.Default.Encode(bars[i].Label)}: {bars[i].Value:G4}</title></rect>");
            sb.Append(CultureInfo.InvariantCulture, $"<text x=\"{10 + (i * w) + 2:F1}\" y=\"{height + 14}\">{HtmlEncoder.Default.Encode(bars[i].Label)}</text>");
        }
        sb.Append("</svg>");
        return new HtmlString(sb.ToString());
    }

    /// <summary>Two distributions over the same bins side by side (baseline grey, live blue), as shares of their totals.</summary>
    public static IHtmlContent Compare(string title, IReadOnlyList<long> baseline, IReadOnlyList<long> live, int width = 300, int height = 110)
    {
        var sb = new StringBuilder();
        sb.Append(CultureInfo.InvariantCulture, $"<svg role=\"img\" aria-label=\"{HtmlEncoder.Default.Encode(title)}\" width=\"{width}\" height=\"{height + 16}\" style=\"background:#fff;border:1px solid #d9dee6\">");
        double bt = Math.Max(1, baseline.Sum()), lt = Math.Max(1, live.Sum());
        var n = Math.Max(baseline.Count, 1);
        var max = Math.Max(baseline.Select(c => c / bt).DefaultIfEmpty(0).Max(), live.Select(c => c / lt).DefaultIfEmpty(0).Max());
        max = Math.Max(max, 1e-9);
        var w = (width - 10.0) / n;
        for (var i = 0; i < n; i++)
        {
            var b = i < baseline.Count ? baseline[i] / bt : 0;
            var l = i < live.Count ? live[i] / lt : 0;
            var hb = b / max * (height - 10);
            var hl = l / max * (height - 10);
            sb.Append(CultureInfo.InvariantCulture, $"<rect x=\"{5 + (i * w) + 1:F1}\" y=\"{height - hb:F1}\" width=\"{Math.Max((w / 2) - 1, 1):F1}\" height=\"{hb:F1}\" fill=\"#b7c0cc\"><title>bin {i + 1} baseline {b:P1}</title></rect>");
            sb.Append(CultureInfo.InvariantCulture, $"<rect x=\"{5 + (i * w) + (w / 2):F1}\" y=\"{height - hl:F1}\" width=\"{Math.Max((w / 2) - 1, 1):F1}\" height=\"{hl:F1}\" fill=\"#1f6feb\"><title>bin {i + 1} live {l:P1}</title></rect>");
        }
        sb.Append(CultureInfo.InvariantCulture, $"<text x=\"5\" y=\"{height + 12}\">{HtmlEncoder.Default.Encode(title)} · grey: baseline, blue: live</text></svg>");
        return new HtmlString(sb.ToString());
    }
}
