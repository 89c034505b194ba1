using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using EdgeFleet.Shared.Ota;

namespace EdgeFleet.Shared.Tests.Ota;

/// <summary>
/// A signed document parses in exactly one way: each loose form below is signed validly (the signature covers
/// its canonical bytes), so only the parser's strictness can refuse it.
/// </summary>
public sealed class StrictDocumentTests : IDisposable
{
    private readonly TestTrust _trust = new();

    /// <summary>Signs an arbitrary body as the fleet would sign a typed one.</summary>
    private static byte[] SignRaw(JsonObject body, SigningKey key)
    {
        using var parsed = JsonDocument.Parse(body.ToJsonString());
        var canonical = CanonicalJson.Serialize(parsed.RootElement);
        var envelope = new JsonObject
        {
            ["signatures"] = new JsonArray(new JsonObject { ["keyId"] = key.KeyId, ["sig"] = Convert.ToBase64String(key.Sign(canonical)) }),
            ["signed"] = JsonNode.Parse(canonical),
        };
        return Encoding.UTF8.GetBytes(envelope.ToJsonString());
    }

    private JsonObject ManifestBody() =>
        JsonNode.Parse(JsonSerializer.SerializeToUtf8Bytes(TestTrust.Manifest(), OtaJsonContext.Default.ModelManifest))!.AsObject();

    [Fact]
    public void The_manifest_as_the_fleet_writes_it_is_accepted()
    {
        var result = _trust.Verify(SignRaw(ManifestBody(), _trust.Signers[0]));
        Assert.True(result.Ok, result.Failure?.ToString());
    }

    public static TheoryData<string, OtaError, string> LooseForms => new()
    {
        { "version as a string", OtaError.Malformed, "" },
        { "version and Version", OtaError.Malformed, "differ only in case" },
        { "Version only", OtaError.Malformed, "" },
        { "nested case variant", OtaError.Malformed, "differ only in case" },
        { "keySetVersion of another key set", OtaError.KeySetMismatch, "names key set v7" },
        { "version 0", OtaError.Malformed, "" },
        { "byte-order mark", OtaError.Malformed, "byte-order mark" },
    };

    [Theory]
    [MemberData(nameof(LooseForms))]
    public void Loose_forms_are_refused_with_their_reason(string form, OtaError code, string reason)
    {
        var body = ManifestBody();
        switch (form)
        {
            case "version as a string":
                body["version"] = "3";
                break;
            case "version and Version":
                body["Version"] = 3;
                break;
            case "Version only":
                body["Version"] = body["version"]!.DeepClone();
                body.Remove("version");
                break;
            case "nested case variant":
                body["healthCheck"]!["Tolerance"] = 10;
                break;
            case "keySetVersion of another key set":
                body["keySetVersion"] = 7;
                break;
            case "version 0":
                body["version"] = 0;
                break;
        }
        var envelope = SignRaw(body, _trust.Signers[0]);
        if (form == "byte-order mark")
            envelope = [0xef, 0xbb, 0xbf, .. envelope];
        var result = _trust.Verify(envelope, installed: 0);
        Assert.False(result.Ok, form);
        Assert.Equal(code, result.Failure!.Code);
        Assert.Contains(reason, result.Failure.Reason, StringComparison.Ordinal);
    }

    [Fact]
    public void A_key_set_or_root_with_version_0_is_refused()
    {
        var keySet = TestTrust.SignKeySet(TestTrust.NewKeySet(0, _trust.Signers, 1), _trust.RootKeys);
        var result = TrustVerifier.VerifyKeySet(_trust.Root, keySet, TestTrust.Now);
        Assert.Equal(OtaError.Malformed, result.Failure!.Code);
        Assert.Contains("versions start at 1", result.Failure.Reason, StringComparison.Ordinal);
    }

    public void Dispose() => _trust.Dispose();
}
