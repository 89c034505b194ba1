using EdgeFleet.Fleet.Devices;
using EdgeFleet.Fleet.Groups;
using EdgeFleet.Fleet.Storage;
using Microsoft.AspNetCore.Mvc;
using Microsoft.AspNetCore.Mvc.RazorPages;

namespace EdgeFleet.Fleet.Console.Pages;

/// <summary>Devices, filtered, sorted and paged on the server (10,000 devices stay fast: one page of rows is rendered).</summary>
public sealed class DevicesModel(IFleetStore store, FleetOptions options, TimeProvider time) : PageModel
{
    public const int PageSize = 50;

    [BindProperty(SupportsGet = true)] public string? Q { get; set; }
    [BindProperty(SupportsGet = true)] public string? Group { get; set; }
    [BindProperty(SupportsGet = true)] public string? Tags { get; set; }
    [BindProperty(SupportsGet = true)] public string? Profile { get; set; }
    [BindProperty(SupportsGet = true)] public string? Status { get; set; }
    [BindProperty(SupportsGet = true)] public string? Version { get; set; }
    [BindProperty(SupportsGet = true)] public string Sort { get; set; } = "id";
    [BindProperty(SupportsGet = true)] public int P { get; set; } = 1;

    public IReadOnlyList<DeviceView> Rows { get; private set; } = [];
    public int Matching { get; private set; }
    public int Pages { get; private set; }
    public string? Error { get; private set; }
    public IReadOnlyList<string> Profiles { get; private set; } = [];
    public IReadOnlyList<string> Groups { get; private set; } = [];
    public DateTimeOffset Now { get; private set; }

    public async Task OnGetAsync(CancellationToken ct)
    {
        Now = time.GetUtcNow();
        var offline = TimeSpan.FromSeconds(options.OfflineAfterSeconds);
        var devices = await store.ListDevicesAsync(ct).ConfigureAwait(false);
        Profiles = [.. devices.Select(d => d.HardwareProfile).OfType<string>().Distinct(StringComparer.Ordinal).Order(StringComparer.Ordinal)];
        Groups = [.. (await store.ListGroupsAsync(ct).ConfigureAwait(false)).Select(g => g.Name)];
        var (filter, error) = await GroupsApi.FilterAsync(string.IsNullOrWhiteSpace(Group) ? null : Group, string.IsNullOrWhiteSpace(Tags) ? null : Tags, store, ct).ConfigureAwait(false);
        if (error is not null)
        {
            Error = Group is not null && Groups.All(g => g != Group) ? $"no group {Group}" : $"the tag selector '{Tags}' is not valid (for example site=plant-7,tier!=test)";
            filter = _ => false;
        }
        var drift = await DeviceView.DriftByDeviceAsync(store, ct).ConfigureAwait(false);
        var rows = devices.Where(filter).Select(d => DeviceView.Of(d, Now, offline, drift)).Where(v =>
            (string.IsNullOrWhiteSpace(Q) || v.Device.Id.Contains(Q.Trim(), StringComparison.OrdinalIgnoreCase))
            && (string.IsNullOrEmpty(Profile) || v.Device.HardwareProfile == Profile)
            && (string.IsNullOrEmpty(Version) || v.Device.ActiveModel?.Version == Version || $"{v.Device.ActiveModel?.Name} v{v.Device.ActiveModel?.Version}" == Version)
            && Status switch { "online" => v.Online && v.Device.RevokedAt is null, "offline" => !v.Online && v.Device.RevokedAt is null, "revoked" => v.Device.RevokedAt is not null, _ => true });
        rows = Sort switch
        {
            "-id" => rows.OrderByDescending(v => v.Device.Id, StringComparer.Ordinal),
            "seen" => rows.OrderBy(v => v.Device.LastSeen),
            "-seen" => rows.OrderByDescending(v => v.Device.LastSeen),
            "version" => rows.OrderBy(v => v.Device.ActiveModel?.Version, StringComparer.Ordinal).ThenBy(v => v.Device.Id, StringComparer.Ordinal),
            "backlog" => rows.OrderByDescending(v => v.Device.StoredAboveAck.Count).ThenBy(v => v.Device.Id, StringComparer.Ordinal),
            _ => rows.OrderBy(v => v.Device.Id, StringComparer.Ordinal),
        };
        var list = rows.ToList();
        Matching = list.Count;
        Pages = Math.Max(1, (Matching + PageSize - 1) / PageSize);
        P = Math.Clamp(P, 1, Pages);
        Rows = list.Skip((P - 1) * PageSize).Take(PageSize).ToList();
    }

    /// <summary>This page's link with one setting changed (the others kept).</summary>
    public string Link(string? sort = null, int? page = null) => "/console/devices" + QueryString.Create(new Dictionary<string, string?>
    {
        ["q"] = Q,
        ["group"] = Group,
        ["tags"] = Tags,
        ["profile"] = Profile,
        ["status"] = Status,
        ["version"] = Version,
        ["sort"] = sort ?? Sort,
        ["p"] = (page ?? P).ToString(System.Globalization.CultureInfo.InvariantCulture),
    }.Where(kv => !string.IsNullOrEmpty(kv.Value))).ToUriComponent();
}
