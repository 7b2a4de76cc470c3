using Poold.Sessions;

namespace Poold.Tests.Sessions;

public class CancelGateTests
{
    private static readonly TimeSpan Short = TimeSpan.FromMilliseconds(50);

    [Test]
    public async Task ACancelDeliveredInTime_IsReportedOnce()
    {
        var gate = new CancelGate();
        Assert.That(gate.TryEnter(out var ticket), Is.True);
        var wait = gate.QuiesceAsync(TimeSpan.FromSeconds(30));
        Assert.That(wait.IsCompleted, Is.False, "the release waits for the cancel in flight");
        gate.Exit(ticket);
        Assert.That(await wait, Is.EqualTo(CancelsSince.Delivered));
        Assert.That(await gate.QuiesceAsync(Short), Is.EqualTo(CancelsSince.None), "nothing came since");
    }

    [Test]
    public async Task ACancelStillOnItsWay_IsWrittenOff_AndLaterReleasesDoNotWaitForIt()
    {
        var gate = new CancelGate();
        Assert.That(gate.TryEnter(out var late), Is.True);
        Assert.That(await gate.QuiesceAsync(Short), Is.EqualTo(CancelsSince.Undelivered));

        // Its connections were closed: the next transaction's release neither waits for it nor closes its own.
        Assert.That(gate.TryPause(), Is.True, "the reply pump may give the next transaction's connections back itself");
        gate.Resume();
        var next = gate.QuiesceAsync(TimeSpan.FromSeconds(30));
        Assert.That(next.IsCompleted, Is.True);
        Assert.That(await next, Is.EqualTo(CancelsSince.None));

        // When it lands at last, it does not count against a cancel of the later transaction.
        Assert.That(gate.TryEnter(out var current), Is.True);
        gate.Exit(late);
        var wait = gate.QuiesceAsync(TimeSpan.FromSeconds(30));
        Assert.That(wait.IsCompleted, Is.False, "the later cancel is still in flight");
        gate.Exit(current);
        Assert.That(await wait, Is.EqualTo(CancelsSince.Delivered));
    }

    [Test]
    public async Task AClosedGate_AdmitsNoCancel()
    {
        var gate = new CancelGate();
        Assert.That(await gate.CloseAsync(Short), Is.EqualTo(CancelsSince.None));
        Assert.That(gate.TryEnter(out _), Is.False);
    }
}
