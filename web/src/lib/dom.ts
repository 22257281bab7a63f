import { useEffect } from 'preact/hooks';

export function useDocumentTitle(title: string): void {
  useEffect(() => {
    document.title = title ? `${title} · Vote` : 'Vote';
  }, [title]);
}

/** After a failed submit, put the keyboard on the first field that needs fixing. */
export function focusFirstInvalid(form: HTMLFormElement | null): void {
  requestAnimationFrame(() => {
    const field = form?.querySelector<HTMLElement>('[aria-invalid="true"]');
    (field ?? form?.querySelector<HTMLElement>('[role="alert"]'))?.focus();
  });
}
