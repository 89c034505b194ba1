using System.Text;
using System.Text.Json.Nodes;
using EdgeFleet.Shared.Ota;

namespace EdgeFleet.Shared.Tests.Ota;

/// <summary>The attack suite on manifest and trust verification: one case per refusal, each with its own code.</summary>
public sealed class ManifestVerificationTests : IDisposable
{
    private readonly TestTrust _trust = new();

    [Fact]
    public void Accepts_a_manifest_signed_by_the_key_set()
    {
        var result = _trust.Verify(_trust.Sign(TestTrust.Manifest()));
        Assert.True(result.Ok, result.Failure?.ToString());
        Assert.Equal(2, result.Document!.Version);
    }

    [Fact]
    public void Accepts_the_same_manifest_whatever_whitespace_and_member_order_transport_used()
    {
        var signed = _trust.Sign(TestTrust.Manifest());
        var reordered = JsonNode.Parse(signed)!.AsObject();
        var body = reordered["signed"]!.AsObject();
        var shuffled = new JsonObject();
        foreach (var (key, value) in body.Reverse().ToList())
        {
            body.Remove(key);
            shuffled[key] = value;
        }
        reordered["signed"] = shuffled;
        var pretty = Encoding.UTF8.GetBytes(reordered.ToJsonString(new System.Text.Json.JsonSerializerOptions { WriteIndented = true }));
        Assert.True(_trust.Verify(pretty).Ok);
    }

    public static TheoryData<string, OtaError> Attacks => new()
    {
        { "not json", OtaError.Malformed },
        { "no signatures array", OtaError.Malformed },
        { "duplicate member", OtaError.Malformed },
        { "wrong document type", OtaError.Malformed },
        { "body changed after signing", OtaError.BadSignature },
        { "signature bytes flipped", OtaError.BadSignature },
        { "signed by an unknown key", OtaError.UnknownKey },
        { "no signatures", OtaError.ThresholdNotMet },
        { "expired", OtaError.Expired },
        { "version at the installed one", OtaError.VersionRollback },
        { "version below the installed one", OtaError.VersionRollback },
        { "artifact for another profile only", OtaError.WrongProfile },
        { "artifact without a sha256", OtaError.Malformed },
    };

    [Theory]
    [MemberData(nameof(Attacks))]
    public void Rejects_attack(string attack, OtaError expected)
    {
        var good = _trust.Sign(TestTrust.Manifest());
        using var stranger = SigningKey.Generate();
        var envelope = attack switch
        {
            "not json" => "{\"signed\": {"u8.ToArray(),
            "no signatures array" => TestTrust.Tamper(good, o => o.Remove("signatures")),
            "duplicate member" => Encoding.UTF8.GetBytes(Encoding.UTF8.GetString(good).Replace("\"modelId\":", "\"version\":99,\"modelId\":", StringComparison.Ordinal)),
            "wrong document type" => TestTrust.Tamper(good, o => o["signed"]!["type"] = "keyset"),
            "body changed after signing" => TestTrust.Tamper(good, o => o["signed"]!["version"] = 99),
            "signature bytes flipped" => TestTrust.Tamper(good, o => o["signatures"]![0]!["sig"] = Convert.ToBase64String(new byte[64])),
            "signed by an unknown key" => _trust.Sign(TestTrust.Manifest(), stranger),
            "no signatures" => TestTrust.Tamper(good, o => o["signatures"] = new JsonArray()),
            "expired" => _trust.Sign(TestTrust.Manifest(expires: TestTrust.Now.AddSeconds(-1))),
            "version at the installed one" => _trust.Sign(TestTrust.Manifest(version: 1)),
            "version below the installed one" => _trust.Sign(TestTrust.Manifest(version: 1)),
            "artifact for another profile only" => _trust.Sign(TestTrust.Manifest(profile: "jetson-orin-nano")),
            "artifact without a sha256" => _trust.Sign(TestTrust.Manifest() with
            {
                Artifacts = new() { ["x86-64-generic"] = new ArtifactEntry { Url = "/a", Length = 10, Sha256 = "" } },
            }),
            _ => throw new ArgumentOutOfRangeException(nameof(attack)),
        };
        var installed = attack == "version below the installed one" ? 5 : 1;
        var result = _trust.Verify(envelope, installed);
        Assert.False(result.Ok, attack);
        Assert.Equal(expected, result.Failure!.Code);
        Assert.False(string.IsNullOrWhiteSpace(result.Failure.Reason));
        Assert.DoesNotContain('\n', result.Failure.Reason);
    }

    [Fact]
    public void Replay_of_an_old_valid_manifest_is_a_rollback_even_though_its_signature_is_good()
    {
        var v2 = _trust.Sign(TestTrust.Manifest(version: 2));
        Assert.True(_trust.Verify(v2, installed: 1).Ok);
        var replay = _trust.Verify(v2, installed: 3);
        Assert.Equal(OtaError.VersionRollback, replay.Failure!.Code);
    }

    [Fact]
    public void Duplicate_signatures_of_one_key_count_once_toward_the_threshold()
    {
        using var trust = new TestTrust(signers: 2, threshold: 2);
        var once = trust.Sign(TestTrust.Manifest(), trust.Signers[0]);
        var twice = TestTrust.Tamper(once, o => o["signatures"]!.AsArray().Add(o["signatures"]![0]!.DeepClone()));
        Assert.Equal(OtaError.ThresholdNotMet, trust.Verify(twice).Failure!.Code);
        Assert.True(trust.Verify(trust.Sign(TestTrust.Manifest(), trust.Signers)).Ok);
    }

    [Fact]
    public void A_bad_extra_signature_does_not_spoil_a_met_threshold()
    {
        var good = _trust.Sign(TestTrust.Manifest(), _trust.Signers[0]);
        var withJunk = TestTrust.Tamper(good, o => o["signatures"]!.AsArray().Add(new JsonObject { ["keyId"] = _trust.Signers[1].KeyId, ["sig"] = Convert.ToBase64String(new byte[64]) }));
        Assert.True(_trust.Verify(withJunk).Ok);
    }

    [Fact]
    public void Rejects_manifest_signed_by_rotated_out_key()
    {
        using var fresh = SigningKey.Generate();
        var rotated = TrustVerifier.VerifyKeySet(_trust.Root, TestTrust.SignKeySet(TestTrust.NewKeySet(2, [fresh], 1), _trust.RootKeys), TestTrust.Now, minVersion: 1);
        Assert.True(rotated.Ok, rotated.Failure?.ToString());
        var oldKeyManifest = _trust.Sign(TestTrust.Manifest(), _trust.Signers[0]);
        Assert.Equal(OtaError.UnknownKey, _trust.Verify(oldKeyManifest, keySet: rotated.Document).Failure!.Code);
        Assert.True(_trust.Verify(_trust.Sign(TestTrust.Manifest() with { KeySetVersion = 2 }, fresh), keySet: rotated.Document).Ok);
    }

    [Fact]
    public void Rejects_a_key_set_not_signed_by_a_threshold_of_the_roots()
    {
        using var impostor = SigningKey.Generate();
        var byImpostor = TestTrust.SignKeySet(TestTrust.NewKeySet(2, [impostor], 1), [impostor]);
        Assert.Equal(OtaError.KeySetUntrusted, TrustVerifier.VerifyKeySet(_trust.Root, byImpostor, TestTrust.Now).Failure!.Code);
        var byOneRoot = TestTrust.SignKeySet(TestTrust.NewKeySet(2, [impostor], 1), [_trust.RootKeys[0]]);
        var result = TrustVerifier.VerifyKeySet(_trust.Root, byOneRoot, TestTrust.Now);
        Assert.Equal(OtaError.KeySetUntrusted, result.Failure!.Code);
        Assert.Contains("1 valid signature", result.Failure.Reason, StringComparison.Ordinal);
    }

    [Fact]
    public void Rejects_an_expired_key_set_and_manifests_under_it_freeze_attack()
    {
        var stale = TestTrust.NewKeySet(1, _trust.Signers, 1, expires: TestTrust.Now.AddMinutes(-1));
        Assert.Equal(OtaError.KeySetExpired, TrustVerifier.VerifyKeySet(_trust.Root, TestTrust.SignKeySet(stale, _trust.RootKeys), TestTrust.Now).Failure!.Code);
        Assert.Equal(OtaError.KeySetExpired, _trust.Verify(_trust.Sign(TestTrust.Manifest()), keySet: stale).Failure!.Code);
    }

    [Fact]
    public void Rejects_a_key_set_older_than_the_installed_one()
    {
        var result = TrustVerifier.VerifyKeySet(_trust.Root, _trust.KeySetEnvelope, TestTrust.Now, minVersion: 2);
        Assert.Equal(OtaError.KeySetRollback, result.Failure!.Code);
    }

    [Fact]
    public void Root_rotation_needs_the_old_and_the_new_roots()
    {
        using var newRoot = SigningKey.Generate();
        var next = new RootDocument { Version = 2, Expires = TestTrust.Now.AddYears(5), Keys = [newRoot.PublicEntry], Threshold = 1 };
        var byBoth = SignedDocuments.Sign(next, OtaJsonContext.Default.RootDocument, [.. _trust.RootKeys, newRoot]);
        var accepted = TrustVerifier.VerifyRootUpdate(_trust.Root, byBoth);
        Assert.True(accepted.Ok, accepted.Failure?.ToString());

        var byNewOnly = SignedDocuments.Sign(next, OtaJsonContext.Default.RootDocument, [newRoot]);
        Assert.Equal(OtaError.RootRejected, TrustVerifier.VerifyRootUpdate(_trust.Root, byNewOnly).Failure!.Code);
        var byOldOnly = SignedDocuments.Sign(next, OtaJsonContext.Default.RootDocument, _trust.RootKeys);
        Assert.Equal(OtaError.RootRejected, TrustVerifier.VerifyRootUpdate(_trust.Root, byOldOnly).Failure!.Code);
        var skipping = SignedDocuments.Sign(next with { Version = 3 }, OtaJsonContext.Default.RootDocument, [.. _trust.RootKeys, newRoot]);
        Assert.Equal(OtaError.RootRejected, TrustVerifier.VerifyRootUpdate(_trust.Root, skipping).Failure!.Code);

        // Key sets signed by the retired roots are no longer trusted under the new root.
        Assert.Equal(OtaError.KeySetUntrusted, TrustVerifier.VerifyKeySet(accepted.Document!, _trust.KeySetEnvelope, TestTrust.Now).Failure!.Code);
    }

    [Fact]
    public void Pinned_root_must_be_signed_by_its_own_threshold()
    {
        Assert.True(TrustVerifier.ReadRoot(_trust.RootEnvelope).Ok);
        var half = SignedDocuments.Sign(_trust.Root, OtaJsonContext.Default.RootDocument, [_trust.RootKeys[0]]);
        Assert.Equal(OtaError.RootRejected, TrustVerifier.ReadRoot(half).Failure!.Code);
    }

    [Fact]
    public void Rejects_a_key_entry_whose_id_does_not_match_its_public_key()
    {
        using var other = SigningKey.Generate();
        var lying = TestTrust.NewKeySet(2, [other], 1) with { Keys = [other.PublicEntry with { KeyId = _trust.Signers[0].KeyId }] };
        var result = TrustVerifier.VerifyKeySet(_trust.Root, TestTrust.SignKeySet(lying, _trust.RootKeys), TestTrust.Now);
        Assert.Equal(OtaError.Malformed, result.Failure!.Code);
    }

    public void Dispose() => _trust.Dispose();
}
