namespace Poold.Config;

/// <summary>
/// Reads and shows <c>backend_require_authN</c> as libpq reads <c>require_auth</c>: a comma list of methods the backend
/// may use (<c>scram-sha-256</c>, <c>md5,scram-sha-256</c>), or of methods it may not use (<c>!password,!md5</c>); not both.
/// </summary>
internal static class BackendAuthSets
{
    private static readonly (string Word, BackendAuthSet Value)[] Words =
    [
        ("none", BackendAuthSet.None), ("password", BackendAuthSet.Password), ("md5", BackendAuthSet.Md5),
        ("scram-sha-256", BackendAuthSet.ScramSha256),
    ];

    public static string? Parse(string text, out BackendAuthSet value)
    {
        value = BackendAuthSet.Any;
        var items = text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        if (items.Length == 0)
        {
            return null;
        }

        var negated = items[0].StartsWith('!');
        var set = (BackendAuthSet)0;
        foreach (var item in items)
        {
            if (item.StartsWith('!') != negated)
            {
                return "negated and plain methods cannot be mixed";
            }

            var word = negated ? item[1..] : item;
            var found = Array.FindIndex(Words, w => w.Word.Equals(word, StringComparison.OrdinalIgnoreCase));
            if (found < 0)
            {
                return $"invalid method \"{word}\"; expected none, password, md5 or scram-sha-256";
            }

            set |= Words[found].Value;
        }

        value = negated ? BackendAuthSet.Any & ~set : set;
        return value == 0 ? "no method would be left" : null;
    }

    public static string Show(BackendAuthSet value) =>
        value == BackendAuthSet.Any ? "" : string.Join(',', Words.Where(w => value.HasFlag(w.Value)).Select(w => w.Word));
}
