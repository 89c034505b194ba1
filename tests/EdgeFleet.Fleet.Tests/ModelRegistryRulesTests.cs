using EdgeFleet.Fleet.Models;

namespace EdgeFleet.Fleet.Tests;

public class ModelRegistryRulesTests
{
    private static readonly DateTimeOffset Now = new(2026, 11, 30, 12, 0, 0, TimeSpan.Zero);

    private static ModelVersion Draft() => new()
    {
        ModelId = "m",
        Version = 1,
        State = ApprovalStates.Draft,
        Card = new ModelCard { Owner = "o", IntendedUse = "u" },
        Artifacts = [new ModelArtifact(ModelArtifact.Fp32Kind, null, new string('a', 64), 10, "f.onnx"), new ModelArtifact(ModelArtifact.Int8Kind, null, new string('b', 64), 5, "i.onnx")],
        CreatedAt = Now,
        CreatedBy = "alice",
    };

    private static string Report(string verdict, string candidate, string? reference = null) =>
        $$"""{"verdict":"{{verdict}}","candidateSha256":"{{candidate}}"{{(reference is null ? "" : $",\"referenceSha256\":\"{reference}\"")}},"top1Agreement":0.995}""";

    [Theory]
    [InlineData("draft", "validated", true)]
    [InlineData("draft", "approved", false)]
    [InlineData("validated", "approved", true)]
    [InlineData("approved", "retired", true)]
    [InlineData("approved", "validated", false)]
    [InlineData("rejected", "approved", false)]
    [InlineData("retired", "approved", false)]
    public void Approval_moves_follow_the_state_machine(string from, string to, bool allowed) =>
        Assert.Equal(allowed, ApprovalStates.CheckMove(from, to) is null);

    [Fact]
    public void An_accepted_report_on_the_int8_file_validates_a_draft()
    {
        var (after, error) = ModelsApi.WithValidation(Draft(), Report("accepted", new string('b', 64), new string('a', 64)), "bob", Now);
        Assert.Null(error);
        Assert.Equal(ApprovalStates.Validated, after!.State);
        Assert.Equal("bob", after.History[^1].By);
        Assert.Equal(0.995, after.Validations.Single().Report.GetProperty("top1Agreement").GetDouble());
    }

    [Fact]
    public void A_rejected_report_rejects_the_version()
    {
        var (after, _) = ModelsApi.WithValidation(Draft(), Report("rejected", new string('b', 64)), "bob", Now);
        Assert.Equal(ApprovalStates.Rejected, after!.State);
    }

    [Theory]
    [InlineData("not json", "not JSON")]
    [InlineData("""{"verdict":"maybe","candidateSha256":"x"}""", "verdict")]
    public void Malformed_reports_are_refused_with_the_reason(string report, string reason)
    {
        var (after, error) = ModelsApi.WithValidation(Draft(), report, "bob", Now);
        Assert.Null(after);
        Assert.Contains(reason, error);
    }

    [Fact]
    public void A_report_about_other_files_is_refused()
    {
        Assert.Contains("not a file of this version", ModelsApi.WithValidation(Draft(), Report("accepted", new string('c', 64)), "b", Now).Error);
        Assert.Contains("not this version's fp32", ModelsApi.WithValidation(Draft(), Report("accepted", new string('b', 64), new string('c', 64)), "b", Now).Error);
    }

    [Fact]
    public void A_card_with_only_the_required_fields_reads_with_empty_collections()
    {
        var card = System.Text.Json.JsonSerializer.Deserialize("""{"owner":"o","intendedUse":"u"}""", EdgeFleet.Fleet.Devices.FleetApiJsonContext.Default.ModelCard)!;
        Assert.Null(card.Problem());
        Assert.Empty(card.Metrics);
        Assert.Empty(card.FeatureBaselines);
    }

    [Fact]
    public void Model_cards_are_checked_field_by_field()
    {
        Assert.Null(new ModelCard { Owner = "o", IntendedUse = "u" }.Problem());
        Assert.Contains("owner", new ModelCard { IntendedUse = "u" }.Problem());
        Assert.Contains("intendedUse", new ModelCard { Owner = "o" }.Problem());
        Assert.Contains("64 hex", new ModelCard { Owner = "o", IntendedUse = "u", TrainingDataSha256 = "abc" }.Problem());
        Assert.Contains("one count per bin", new ModelCard { Owner = "o", IntendedUse = "u", FeatureBaselines = [new FeatureBaseline("rms", [0, 1, 2], [1, 2, 3])] }.Problem());
        Assert.Contains("strictly increasing", new ModelCard { Owner = "o", IntendedUse = "u", FeatureBaselines = [new FeatureBaseline("rms", [0, 2, 1], [1, 2])] }.Problem());
        Assert.Null(new ModelCard { Owner = "o", IntendedUse = "u", FeatureBaselines = [new FeatureBaseline("rms", [0, 1, 2], [5, 7])] }.Problem());
    }
}
