namespace Poold.Pooling;

/// <summary>
/// What makes two backend connections interchangeable: the node, the user, the database and every other startup
/// parameter the client sent (application_name, options, DateStyle, ...), in a canonical order.
/// </summary>
internal sealed record PoolKey(int NodeId, string User, string Database, string Options)
{
    public static PoolKey Create(int nodeId, IReadOnlyList<KeyValuePair<string, string>> startupParameters)
    {
        string user = "", database = "";
        var others = new List<KeyValuePair<string, string>>();
        foreach (var p in startupParameters)
        {
            switch (p.Key)
            {
                case "user":
                    user = p.Value;
                    break;
                case "database":
                    database = p.Value;
                    break;
                default:
                    others.Add(p);
                    break;
            }
        }

        others.Sort((a, b) => string.CompareOrdinal(a.Key, b.Key));
        return new PoolKey(nodeId, user, database.Length == 0 ? user : database,
            string.Join('\u0001', others.Select(p => p.Key + "\u0002" + p.Value)));
    }

    public override string ToString() => $"node {NodeId} user \"{User}\" database \"{Database}\"";
}
