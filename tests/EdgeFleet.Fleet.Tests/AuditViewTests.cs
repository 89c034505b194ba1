using EdgeFleet.Fleet.Console;
using EdgeFleet.Fleet.Console.Pages;
using EdgeFleet.Fleet.Identity;

namespace EdgeFleet.Fleet.Tests;

public class AuditViewTests
{
    [Fact]
    public void A_change_reads_as_the_fields_that_changed_and_text_keeps_its_line_breaks()
    {
        Assert.Equal(["state: open → acknowledged"], AuditDiff.Lines("""{"state":"open","by":"x"}""", """{"state":"acknowledged","by":"x"}"""));
        Assert.Equal(["role: – → operator"], AuditDiff.Lines("{}", """{"role":"operator"}"""));
        Assert.Equal(["tags: {\"site\":\"a\"} → {\"site\":\"b\"}"], AuditDiff.Lines("""{"tags":{"site":"a"}}""", """{"tags":{"site":"b"}}"""));
        // Not JSON objects: the texts, their escapes decoded, line breaks kept.
        Assert.Equal(["after: name: a\nb"], AuditDiff.Lines(null, "{\"name\":\"a\\nb\"}"));
        Assert.Equal(["before: plain text", "after: other"], AuditDiff.Lines("plain text", "other"));
        Assert.Empty(AuditDiff.Lines(null, null));
    }

    [Fact]
    public void A_run_of_routine_entries_is_one_row_with_its_count()
    {
        AuditEntry E(int minute, string actor, string action) =>
            new() { At = DateTimeOffset.UnixEpoch.AddMinutes(minute), Actor = actor, Action = action, Target = "t" };
        var rows = AuditModel.Group([E(9, "sys", "model.baseline.reference"), E(8, "sys", "model.baseline.reference"),
            E(7, "sys", "model.baseline.reference"), E(6, "key:a", "rollout.pause"), E(5, "sys", "model.baseline.reference")]);
        Assert.Equal([(3, 2), (1, 0), (1, 0)], rows.Select(r => (r.More + 1, r.More)));
        Assert.Equal(DateTimeOffset.UnixEpoch.AddMinutes(7), rows[0].Oldest);
    }
}
