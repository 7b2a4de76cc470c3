using Poold.Routing;

namespace Poold.Sessions;

/// <summary>
/// What the session's open transaction has set so far, oldest first, as the client's statements left it: its
/// savepoints (SAVEPOINT, after RELEASE and ROLLBACK TO acted on them) and its settings (SET LOCAL, SET TRANSACTION, SET
/// CONSTRAINTS, and SET, RESET or RESET ALL made inside the transaction). A node that joins the transaction late gets them all replayed
/// after its BEGIN, in their order: without the savepoints it refused a copied ROLLBACK TO (3B001), without the settings
/// a write moved to the primary ran at the wrong isolation level or without its SET LOCAL statement_timeout. A node
/// already in the transaction gets the settings it has not run before its next statement (savepoints are copied to
/// every node as they are sent).
/// <para>
/// A session-level SET made in a transaction lasts only if the transaction commits: it joins the session's history (what
/// every later connection is given) at a COMMIT of a transaction that has not failed, or at PREPARE TRANSACTION
/// (<see cref="TakeCommitted"/>), and is forgotten at a ROLLBACK or when the transaction is known to have failed
/// (<see cref="ForgetSessionSettings"/>). Owned by the backend side's dispatching turn (the client pump); nothing else reads it.
/// </para>
/// </summary>
internal sealed class TransactionStatements
{
    private readonly List<Entry> _entries = [];

    /// <summary>The number of the last setting added: a node that has run up to it lacks none. Grows across transactions.</summary>
    public long LastSetting { get; private set; }

    public int Count => _entries.Count;

    /// <summary>Whether any setting stands (a node given the entries then carries something its connection's state text does not say).</summary>
    public bool HasSettings
    {
        get
        {
            foreach (var entry in _entries)
            {
                if (entry.Savepoint is null)
                {
                    return true;
                }
            }

            return false;
        }
    }

    /// <summary>Statement <paramref name="index"/> (oldest first), as the client sent it.</summary>
    public string StatementAt(int index) => _entries[index].Sql;

    /// <summary>The settings numbered after <paramref name="seen"/>, oldest first: what a node in the transaction has not run.</summary>
    public IEnumerable<string> SettingsAfter(long seen)
    {
        foreach (var entry in _entries)
        {
            if (entry.Savepoint is null && entry.Number > seen)
            {
                yield return entry.Sql;
            }
        }
    }

    /// <summary>
    /// A SET LOCAL, SET TRANSACTION or session-level SET/RESET sent inside the transaction (not to a failed one, which
    /// refuses it). <paramref name="session"/>: the session-level statement's classification, kept until the end of the
    /// transaction decides whether it lasts. Returns the setting's number.
    /// </summary>
    public long AddSetting(string sql, Classification? session, bool characteristics = false)
    {
        _entries.Add(new Entry(null, sql, ++LastSetting, session, characteristics));
        return LastSetting;
    }

    /// <summary>
    /// A statement is being sent. Outside a transaction (<paramref name="inTransactionBefore"/> false, as Poold predicts
    /// it) nothing of a transaction can exist, whatever Poold missed; the end of a transaction drops everything (a COMMIT
    /// takes the session-level settings first: <see cref="TakeCommitted"/>). A SAVEPOINT adds one (a name used twice
    /// stands twice, as on the server); RELEASE drops the newest of that name and every later savepoint, keeping the
    /// settings made since (they now belong to the enclosing level); ROLLBACK TO keeps that savepoint and drops everything
    /// after it, settings too, as the server undoes them; a name not set is the server's error and changes nothing.
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
            if (inTransactionBefore && c.AndChain)
            {
                // The chained transaction starts with no savepoint and no setting but its characteristics (SET TRANSACTION).
                _entries.RemoveAll(static e => !e.Characteristics);
            }
            else
            {
                _entries.Clear();
            }

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
                _entries.Add(new Entry(name, sql, 0, null, false));
            }

            return;
        }

        if (!certain || (c.Verb == "RELEASE" && refused))
        {
            return;
        }

        var index = _entries.Count - 1;
        while (index >= 0 && _entries[index].Savepoint != name)
        {
            index--;
        }

        if (index < 0)
        {
            return;
        }

        if (c.Verb == "RELEASE")
        {
            // The savepoint and the later ones go; what was set under them stays, as on the server.
            for (var i = _entries.Count - 1; i >= index; i--)
            {
                if (_entries[i].Savepoint is not null)
                {
                    _entries.RemoveAt(i);
                }
            }

            return;
        }

        // ROLLBACK TO keeps the savepoint (the server re-establishes it) and undoes everything after it.
        _entries.RemoveRange(index + 1, _entries.Count - index - 1);
    }

    /// <summary>The transaction failed and ends: its session-level settings will not last (its other entries go at its end).</summary>
    public void ForgetSessionSettings() => _entries.RemoveAll(static e => e.Session is not null);

    /// <summary>The number of the transaction's first session-level setting still standing, or 0 when it has none.</summary>
    public long FirstSessionSetting
    {
        get
        {
            foreach (var entry in _entries)
            {
                if (entry.Session is not null)
                {
                    return entry.Number;
                }
            }

            return 0;
        }
    }

    /// <summary>
    /// The transaction commits (a COMMIT of a transaction not known to have failed): the session-level settings it made,
    /// oldest first, for the session's history. The entries themselves go at <see cref="Dispatched"/>.
    /// </summary>
    public IReadOnlyList<(Classification Classification, string Sql)> TakeCommitted()
    {
        List<(Classification, string)>? committed = null;
        foreach (var entry in _entries)
        {
            if (entry.Session is { } c)
            {
                (committed ??= []).Add((c, entry.Sql));
            }
        }

        return (IReadOnlyList<(Classification, string)>?)committed ?? [];
    }

    /// <summary>
    /// A savepoint (<see cref="Savepoint"/> its folded name) or a setting (numbered; <see cref="Session"/> when
    /// session-level; <see cref="Characteristics"/> for SET TRANSACTION, which AND CHAIN keeps).
    /// </summary>
    private readonly record struct Entry(string? Savepoint, string Sql, long Number, Classification? Session, bool Characteristics);
}
