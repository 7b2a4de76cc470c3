using Poold.Routing;

namespace Poold.Sessions;

/// <summary>
/// The savepoints of the session's open transaction, oldest first, as the client's SAVEPOINT, RELEASE and ROLLBACK TO
/// have left them. A node that joins the transaction after a savepoint was set (a read balanced to a standby once
/// <c>disable_load_balance_on_write</c> lets it) gets them replayed after its BEGIN, so that a ROLLBACK TO or RELEASE,
/// copied to every node in the transaction, finds the savepoint there too: without them the standby refused the copy
/// (3B001) and stayed aborted. Owned by the backend side's dispatching turn (the client pump); nothing else reads it.
/// </summary>
internal sealed class SavepointStack
{
    private readonly List<(string Name, string Sql)> _savepoints = [];

    public int Count => _savepoints.Count;

    /// <summary>The statement that set savepoint <paramref name="index"/> (oldest first), as the client sent it.</summary>
    public string StatementAt(int index) => _savepoints[index].Sql;

    /// <summary>
    /// A statement is being sent. Outside a transaction (<paramref name="inTransactionBefore"/> false, as Poold predicts
    /// it) no savepoint can exist, whatever Poold missed; the end of a transaction drops them all. A SAVEPOINT adds one (a
    /// name used twice stands twice, as on the server); RELEASE drops the newest of that name and every later one;
    /// ROLLBACK TO keeps that one and drops the later ones; a name not set is the server's error and changes nothing.
    /// <para>
    /// What may not run is kept on the safe side: a node that joins later may hold a savepoint the others dropped (it only
    /// reads, and a ROLLBACK TO or RELEASE naming it fails on the node that answers, as on the server), never lack one they
    /// hold. So RELEASE and ROLLBACK TO drop nothing unless <paramref name="certain"/> (the server surely runs them: no
    /// earlier statement whose error would make it skip them is still unanswered), and a SAVEPOINT is added unless
    /// <paramref name="refused"/> (it goes to a node whose transaction has failed, which refuses it).
    /// </para>
    /// </summary>
    public void Dispatched(Classification c, string sql, bool inTransactionBefore, bool refused, bool certain)
    {
        if (!inTransactionBefore || c.Transaction == TransactionEffect.End)
        {
            // AND CHAIN too: the next transaction starts with none.
            _savepoints.Clear();
            return;
        }

        if (c.Transaction != TransactionEffect.Savepoint || c.SavepointName is not { } name || c.MultiStatement)
        {
            return;
        }

        if (c.Verb == "SAVEPOINT")
        {
            if (!refused && sql.Length > 0)
            {
                _savepoints.Add((name, sql));
            }

            return;
        }

        if (!certain || (c.Verb == "RELEASE" && refused))
        {
            return;
        }

        var index = _savepoints.Count - 1;
        while (index >= 0 && _savepoints[index].Name != name)
        {
            index--;
        }

        if (index < 0)
        {
            return;
        }

        // RELEASE drops the savepoint itself; ROLLBACK TO keeps it (the server re-establishes it).
        var first = c.Verb == "RELEASE" ? index : index + 1;
        _savepoints.RemoveRange(first, _savepoints.Count - first);
    }
}
