using EdgeFleet.Shared.Identity;
using EdgeFleet.Shared.Ota;

namespace EdgeFleet.Shared.Tests.Identity;

public sealed class DeviceTokenTests : IDisposable
{
    private static readonly DateTimeOffset Now = new(2026, 11, 23, 12, 0, 0, TimeSpan.Zero);
    private static readonly TimeSpan Max = TimeSpan.FromMinutes(60);
    private static readonly TimeSpan Skew = TimeSpan.FromMinutes(5);
    private readonly SigningKey _key = SigningKey.Generate();
    private readonly SigningKey _other = SigningKey.Generate();

    private DeviceTokenError Check(string? token, string device = "cam-1", SigningKey? key = null, DateTimeOffset? at = null) =>
        DeviceToken.Verify(token, device, (key ?? _key).PublicKeyBytes, at ?? Now, Max, Skew).Error;

    [Fact]
    public void A_token_verifies_with_its_devices_key_only()
    {
        var token = DeviceToken.Create(_key, "cam-1", Now, TimeSpan.FromMinutes(10));
        Assert.StartsWith("eft1.", token, StringComparison.Ordinal);
        Assert.Equal(DeviceTokenError.None, Check(token));
        Assert.Equal(DeviceTokenError.BadSignature, Check(token, key: _other));
        Assert.Equal(DeviceTokenError.WrongDevice, Check(token, device: "cam-2"));
    }

    [Fact]
    public void Time_rules_allow_clock_skew_and_refuse_expired_future_and_long_lived_tokens()
    {
        var token = DeviceToken.Create(_key, "cam-1", Now, TimeSpan.FromMinutes(10));
        Assert.Equal(DeviceTokenError.None, Check(token, at: Now.AddMinutes(14)));
        Assert.Equal(DeviceTokenError.Expired, Check(token, at: Now.AddMinutes(16)));
        Assert.Equal(DeviceTokenError.None, Check(token, at: Now.AddMinutes(-4)));
        Assert.Equal(DeviceTokenError.NotYetValid, Check(token, at: Now.AddMinutes(-6)));
        Assert.Equal(DeviceTokenError.LifetimeTooLong, Check(DeviceToken.Create(_key, "cam-1", Now, TimeSpan.FromHours(2))));
    }

    [Theory]
    [InlineData(null)]
    [InlineData("")]
    [InlineData("eft1.")]
    [InlineData("eft1.abc")]
    [InlineData("eft1.!!!.!!!")]
    [InlineData("jwt.eyJ9.sig")]
    public void Malformed_tokens_are_refused_as_malformed(string? token) => Assert.Equal(DeviceTokenError.Malformed, Check(token));

    [Fact]
    public void Changing_any_byte_of_the_claims_breaks_the_signature()
    {
        var token = DeviceToken.Create(_key, "cam-1", Now, TimeSpan.FromMinutes(10));
        var parts = token.Split('.');
        var claims = System.Text.Encoding.UTF8.GetString(System.Buffers.Text.Base64Url.DecodeFromChars(parts[1])).Replace("\"exp\":", "\"exp\":1", StringComparison.Ordinal);
        var forged = $"eft1.{System.Buffers.Text.Base64Url.EncodeToString(System.Text.Encoding.UTF8.GetBytes(claims))}.{parts[2]}";
        Assert.NotEqual(DeviceTokenError.None, Check(forged));
        Assert.Equal(DeviceTokenError.Malformed, Check(token + new string('A', DeviceToken.MaxLength)));
    }

    public void Dispose()
    {
        _key.Dispose();
        _other.Dispose();
    }
}
