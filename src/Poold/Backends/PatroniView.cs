using System.Globalization;
using System.Net;
using System.Text.Json;

namespace Poold.Backends;

/// <summary>One member of a Patroni cluster as its REST API's <c>/cluster</c> reports it.</summary>
internal sealed record PatroniMember(string Name, string Role, string State, string Host, int Port, bool NoLoadBalance, bool NoFailover)
{
    /// <summary>The member's own REST API (<c>api_url</c> without its <c>/patroni</c> path), when Patroni gives it.</summary>
    public string? ApiBase { get; init; }

    /// <summary>The member holding the leader lock and running as a writable primary.</summary>
    public bool IsLeader => Role is "leader" or "master" or "primary" && IsRunning;

    /// <summary>PostgreSQL is up on the member (Patroni 3.0 says <c>running</c>, 3.1+ <c>streaming</c> for replicas).</summary>
    public bool IsRunning => State is "running" or "streaming";

    /// <summary>Whether this member is the node at <paramref name="host"/>:<paramref name="port"/> of the configuration.</summary>
    public bool Is(string host, int port) =>
        port == Port && (string.Equals(host, Host, StringComparison.OrdinalIgnoreCase)
                         || (IPAddress.TryParse(host, out var a) && IPAddress.TryParse(Host, out var b) && a.Equals(b)));

    /// <summary>The members in a <c>/cluster</c> document; a <see cref="FormatException"/> says what is wrong with one that is not.</summary>
    public static IReadOnlyList<PatroniMember> ParseCluster(string json)
    {
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(json);
        }
        catch (JsonException e)
        {
            throw new FormatException($"not JSON: {e.Message}", e);
        }

        using (document)
        {
            if (document.RootElement.ValueKind != JsonValueKind.Object
                || !document.RootElement.TryGetProperty("members", out var members) || members.ValueKind != JsonValueKind.Array)
            {
                throw new FormatException("no \"members\" array");
            }

            var result = new List<PatroniMember>();
            foreach (var m in members.EnumerateArray())
            {
                var name = Text(m, "name") ?? throw new FormatException("a member without a name");
                var host = Text(m, "host") ?? throw new FormatException($"member \"{name}\" has no host");
                var port = m.TryGetProperty("port", out var p) && p.ValueKind == JsonValueKind.Number && p.TryGetInt32(out var n) ? n
                    : throw new FormatException($"member \"{name}\" has no port");
                var tags = m.TryGetProperty("tags", out var t) && t.ValueKind == JsonValueKind.Object ? t : default;
                var api = Text(m, "api_url") is { } url && Uri.TryCreate(url, UriKind.Absolute, out var uri)
                    ? uri.GetLeftPart(UriPartial.Authority)
                    : null;
                result.Add(new PatroniMember(name, Text(m, "role") ?? "", Text(m, "state") ?? "", host, port, Tag(tags, "noloadbalance"),
                    Tag(tags, "nofailover"))
                { ApiBase = api });
            }

            return result;
        }
    }

    private static string? Text(JsonElement element, string name) =>
        element.TryGetProperty(name, out var value) && value.ValueKind == JsonValueKind.String ? value.GetString() : null;

    /// <summary>Patroni tags are YAML values: <c>true</c>, or a string such as "true"/"on".</summary>
    private static bool Tag(JsonElement tags, string name) =>
        tags.ValueKind == JsonValueKind.Object && tags.TryGetProperty(name, out var value)
        && (value.ValueKind == JsonValueKind.True
            || value.ValueKind == JsonValueKind.String && value.GetString()?.ToLower(CultureInfo.InvariantCulture) is "true" or "on" or "yes" or "1");
}
