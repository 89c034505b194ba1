using EdgeFleet.Fleet.Identity;
using EdgeFleet.Fleet.Storage;
using Microsoft.AspNetCore.Mvc;
using Microsoft.AspNetCore.Mvc.RazorPages;

namespace EdgeFleet.Fleet.Console.Pages;

/// <summary>
/// The audit log, newest first: filtered by target (in the store), and by actor, action and age among the newest
/// <see cref="Searched"/> entries; a run of routine entries (the same actor and action in a row) shows as one row with
/// its count.
/// </summary>
public sealed class AuditModel(IFleetStore store) : PageModel
{
    public const int PageSize = 100;

    /// <summary>How many of the newest entries the actor, action and age filters look through.</summary>
    public const int Searched = 10_000;

    [BindProperty(SupportsGet = true)] public string? Target { get; set; }

    [BindProperty(SupportsGet = true)] public string? Actor { get; set; }

    /// <summary>An action or its prefix: <c>rollout.</c>, <c>model.version.approved</c>.</summary>
    [BindProperty(SupportsGet = true)] public string? Action { get; set; }

    [BindProperty(SupportsGet = true)] public double? Hours { get; set; }

    [BindProperty(SupportsGet = true)] public int P { get; set; } = 1;

    /// <summary>Rows: an entry, and how many older entries of the same actor and action followed it in a row.</summary>
    public IReadOnlyList<(AuditEntry Entry, int More, DateTimeOffset Oldest)> Rows { get; private set; } = [];

    public bool More { get; private set; }

    public async Task OnGetAsync(CancellationToken ct)
    {
        P = Math.Clamp(P, 1, 100);
        var read = await store.GetAuditAsync(string.IsNullOrWhiteSpace(Target) ? null : Target.Trim(), Searched, ct).ConfigureAwait(false);
        var since = Hours is > 0 and var h ? DateTimeOffset.UtcNow - TimeSpan.FromHours(Math.Min(h, 24 * 3650)) : DateTimeOffset.MinValue;
        var entries = read.Where(e => e.At >= since
            && (string.IsNullOrWhiteSpace(Actor) || e.Actor.Contains(Actor.Trim(), StringComparison.OrdinalIgnoreCase))
            && (string.IsNullOrWhiteSpace(Action) || e.Action.StartsWith(Action.Trim(), StringComparison.OrdinalIgnoreCase)));
        var rows = Group(entries);
        Rows = [.. rows.Skip((P - 1) * PageSize).Take(PageSize)];
        More = rows.Count > P * PageSize;
    }

    /// <summary>Consecutive entries of the same actor and action (newest first) become one row with their count.</summary>
    public static List<(AuditEntry Entry, int More, DateTimeOffset Oldest)> Group(IEnumerable<AuditEntry> newestFirst)
    {
        var rows = new List<(AuditEntry Entry, int More, DateTimeOffset Oldest)>();
        foreach (var e in newestFirst)
        {
            if (rows.Count > 0 && rows[^1].Entry.Actor == e.Actor && rows[^1].Entry.Action == e.Action)
                rows[^1] = (rows[^1].Entry, rows[^1].More + 1, e.At);
            else
                rows.Add((e, 0, e.At));
        }
        return rows;
    }

    public string Link(int page) => "/console/audit" + QueryString.Create(new Dictionary<string, string?>
    {
        ["target"] = Target,
        ["actor"] = Actor,
        ["action"] = Action,
        ["hours"] = Hours?.ToString(System.Globalization.CultureInfo.InvariantCulture),
        ["p"] = page.ToString(System.Globalization.CultureInfo.InvariantCulture),
    }.Where(kv => !string.IsNullOrEmpty(kv.Value))).ToUriComponent();
}
