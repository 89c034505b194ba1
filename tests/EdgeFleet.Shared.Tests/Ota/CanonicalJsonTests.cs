using System.Text;
using System.Text.Json;
using EdgeFleet.Shared.Ota;

namespace EdgeFleet.Shared.Tests.Ota;

public class CanonicalJsonTests
{
    private static string Canonical(string json)
    {
        using var doc = CanonicalJson.Parse(Encoding.UTF8.GetBytes(json));
        return Encoding.UTF8.GetString(CanonicalJson.Serialize(doc.RootElement));
    }

    [Theory]
    [InlineData("{ \"b\": 1, \"a\": [true, false, null] }", "{\"a\":[true,false,null],\"b\":1}")]
    [InlineData("{\"z\":{\"y\":2,\"x\":1},\"Z\":0}", "{\"Z\":0,\"z\":{\"x\":1,\"y\":2}}")]
    [InlineData("[1.0, 0.1, 1e-7, -0, 12345678901234]", "[1,0.1,1E-07,0,12345678901234]")]
    [InlineData("\"tab\\there \\u00e9 \\\"q\\\" \\\\ \\/\"", "\"tab\\u0009here é \\\"q\\\" \\\\ /\"")]
    [InlineData("{\"é\":1,\"e\":2,\"f\":3}", "{\"e\":2,\"f\":3,\"é\":1}")]
    public void Writes_the_documented_form(string input, string expected) => Assert.Equal(expected, Canonical(input));

    [Fact]
    public void Is_idempotent() =>
        Assert.Equal(Canonical("{\"k\":[{\"b\":1.5,\"a\":\"x\"}]}"), Canonical(Canonical("{\"k\":[{\"b\":1.5,\"a\":\"x\"}]}")));

    [Theory]
    [InlineData("{\"a\":1,\"a\":2}")]
    [InlineData("{\"a\":1,}")]
    [InlineData("{\"a\":1 /* c */}")]
    [InlineData("\"\\ud800\"")]
    public void Rejects_ambiguous_input(string input) => Assert.ThrowsAny<JsonException>(() => Canonical(input));
}
